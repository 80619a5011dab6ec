"""KafkaSink: each report envelope as one Kafka record, produced with aiokafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)
from prometheus_client import CollectorRegistry

from observer.reports.model import Report
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.kafka_properties import producer_kwargs
from observer.sinks.report_ids import hierarchy_id
from observer.sinks.settings import ConfigReader

# uuid5 namespace for object ids that are not UUIDs themselves (stable across observer instances)
OBJECT_ID_NAMESPACE = uuid.UUID("6f8d7a52-5c38-4b52-9a3e-8f0d2c1e4b71")
# record errors a retry cannot fix
_PERMANENT_ERRORS = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError, InvalidTopicError,
                     RecordListTooLargeError, MessageSizeTooLargeError)
KEY_STRATEGIES = ("INSTANCE_BASED", "RANDOM", "OBJECT_HIERARCHY_BASED", "OBJECT_HIERACHY_BASED")


class KafkaSink(Sink):
    """Config: ``topic`` ("reports"), ``properties`` (Java producer properties, nested maps joined with
    "."; see :mod:`observer.sinks.kafka_properties`), ``keyAssignmentStrategy`` INSTANCE_BASED (default) |
    RANDOM | OBJECT_HIERARCHY_BASED (the reference spelling OBJECT_HIERACHY_BASED is accepted),
    ``tryReconnectOnFailure`` (true: a failed send closes the producer and opens a new one before the
    retry), ``encoder`` (JSON, the only one).

    Record value: the report envelope JSON. Record key: a UUID as the Java UUIDSerializer writes it, i.e.
    its 36-character lower-case string form in UTF-8. RANDOM: a new UUID per record; INSTANCE_BASED: one
    UUID per sink instance; OBJECT_HIERARCHY_BASED: the report's callId (else clientId/peerConnectionId, or
    sfuId/transportId/rtpPadId for SFU reports). An id that is not a UUID is mapped to uuid5 of it, so one
    object keeps one key (and partition) across observer instances; the reference used one fixed UUID
    per sink for all of them."""

    type_name = "KafkaSink"
    default_batch = BatchSettings(max_batch_size=1000, max_batch_delay=0.1)

    def __init__(self, name: str, producer_config: Mapping[str, Any], *, topic: str = "reports",
                 key_strategy: str = "INSTANCE_BASED", reconnect_on_failure: bool = True,
                 batch: BatchSettings | None = None, registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.topic = topic
        if key_strategy == "OBJECT_HIERACHY_BASED":  # the reference's spelling
            key_strategy = "OBJECT_HIERARCHY_BASED"
        self.key_strategy = key_strategy
        self.reconnect_on_failure = reconnect_on_failure
        self._producer_config = {"client_id": f"observer-{name}", "request_timeout_ms": 10_000,
                                 **producer_config}
        self._instance_key = str(uuid.uuid4()).encode()
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> KafkaSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        properties = reader.mapping("properties")
        if properties is None:
            raise reader.error("properties", "is required (at least bootstrap.servers)")
        kwargs, ignored = producer_kwargs(properties, reader.key_path("properties"))
        reader.choice("encoder", ("JSON",), "JSON")
        sink = cls(
            name, kwargs, topic=reader.string("topic", "reports", allow_empty=False),
            key_strategy=reader.choice("keyAssignmentStrategy", KEY_STRATEGIES, "INSTANCE_BASED"),
            reconnect_on_failure=reader.boolean("tryReconnectOnFailure", True),
            batch=BatchSettings.read(reader, cls.default_batch), registry=registry,
        )
        reader.finish()
        for key in ignored:
            sink.log.warning("sink %s: Kafka property %r has no aiokafka equivalent; ignored", name, key)
        return sink

    def record_key(self, report: Report) -> bytes:
        if self.key_strategy == "RANDOM":
            return str(uuid.uuid4()).encode()
        if self.key_strategy == "INSTANCE_BASED":
            return self._instance_key
        object_id = hierarchy_id(report)
        if object_id is None:
            return self._instance_key
        try:
            return str(uuid.UUID(object_id)).encode()
        except ValueError:
            return str(uuid.uuid5(OBJECT_ID_NAMESPACE, object_id)).encode()

    async def _open(self) -> None:
        producer = AIOKafkaProducer(**self._producer_config)
        self._producer = producer
        await producer.start()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _reset_after(self, error: BaseException) -> bool:
        return self.reconnect_on_failure

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        producer = self._producer
        assert producer is not None
        sent: list[Report] = []
        futures: list[asyncio.Future[Any]] = []
        too_large = 0
        stop_at = len(batch)
        error: BaseException | None = None
        for index, report in enumerate(batch):
            try:
                future = await producer.send(self.topic, report.to_json(), key=self.record_key(report))
            except MessageSizeTooLargeError:
                too_large += 1
                continue
            except KafkaError as exc:  # e.g. no metadata for the topic within request.timeout.ms
                error, stop_at = exc, index
                break
            sent.append(report)
            futures.append(future)
        results = await asyncio.gather(*futures, return_exceptions=True)
        retry: list[Report] = []
        failed: list[Report] = []
        for report, result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                error = result
                (failed if isinstance(result, _PERMANENT_ERRORS) else retry).append(report)
        retry.extend(batch[stop_at:])
        if not (retry or failed or too_large):
            return None
        if error is not None and len(retry) == len(batch):
            raise error
        return SendOutcome(retry=retry, failed=failed, dropped={"too_large": too_large}, error=error)
