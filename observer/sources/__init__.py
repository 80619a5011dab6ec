"""Samples sources: ``POST /rest/samples/{serviceId}/{mediaUnitId}`` and
``ws /samples/{serviceId}/{mediaUnitId}``."""

from observer.sources.routes import SamplesSources, samples_routes
from observer.sources.settings import SourceSettings

__all__ = ["SamplesSources", "SourceSettings", "samples_routes"]
