"""``build_sink``: a sink from its configured type name and ``config`` mapping.

Sink modules are imported on demand, so a daemon that only logs never imports aiokafka, pymongo or
aiobotocore."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from observer.sinks.base import Sink
from observer.sinks.settings import SinkConfigError

SINK_TYPES: dict[str, str] = {
    "LoggerSink": "observer.sinks.logger:LoggerSink",
    "FileSink": "observer.sinks.file:FileSink",
    "KafkaSink": "observer.sinks.kafka:KafkaSink",
    "MongoSink": "observer.sinks.mongo:MongoSink",
    "FirehoseSink": "observer.sinks.firehose:FirehoseSink",
    "AwsS3Sink": "observer.sinks.s3:AwsS3Sink",
    "WebsocketSink": "observer.sinks.websocket:WebsocketSink",
    "SocketSink": "observer.sinks.tcp_socket:SocketSink",
}


def build_sink(name: str, type_name: str, config: Mapping[str, Any] | None,
               registry: CollectorRegistry | None = None) -> Sink:
    """Raises :class:`SinkConfigError` naming ``observer.sinks.<name>.…`` when the type or config is bad."""
    target = SINK_TYPES.get(type_name)
    if target is None:
        raise SinkConfigError(f"observer.sinks.{name}.type",
                              f"unknown sink type {type_name!r}; expected one of {', '.join(SINK_TYPES)}")
    module_name, class_name = target.split(":")
    sink_class = getattr(importlib.import_module(module_name), class_name)
    sink: Sink = sink_class.from_config(name, config, registry)
    return sink
