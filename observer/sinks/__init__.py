"""Report sinks: where the observer forwards its reports (logger, file, Kafka, MongoDB, Firehose, S3,
websocket, TCP socket). ``build_sink`` makes one from config; ``SinkGroup`` fans batches out to all."""

from observer.sinks.base import BatchSettings, PermanentSinkError, SendOutcome, Sink, SinkMetrics
from observer.sinks.factory import SINK_TYPES, build_sink
from observer.sinks.group import SinkGroup, TypeFilter
from observer.sinks.settings import SinkConfigError

__all__ = [
    "SINK_TYPES",
    "BatchSettings",
    "PermanentSinkError",
    "SendOutcome",
    "Sink",
    "SinkConfigError",
    "SinkGroup",
    "SinkMetrics",
    "TypeFilter",
    "build_sink",
]
