"""The processing core: batching, call assignment, entity updates, matching, event reports and
idle expiry, over the repositories (spec/observer.md §2-§6). Never imports sources or sinks."""

from observer.pipeline.expiry import Expirer
from observer.pipeline.pipeline import Pipeline
from observer.pipeline.settings import (
    ANONYMIZATION,
    MASTER,
    NONE,
    SLAVE,
    CollectorSettings,
    MaxIdleSettings,
    ObfuscatorSettings,
    PipelineSettings,
)

__all__ = [
    "ANONYMIZATION",
    "MASTER",
    "NONE",
    "SLAVE",
    "CollectorSettings",
    "Expirer",
    "MaxIdleSettings",
    "ObfuscatorSettings",
    "Pipeline",
    "PipelineSettings",
]
