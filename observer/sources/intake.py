"""What both transports do with one frame: decode, drop what must be dropped (counted and logged),
hand the rest to the pipeline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from observer.samples import KIND_CLIENT, KIND_SFU, Decoder, ReceivedSamples, SamplesConsumer
from observer.sources.metrics import DROP_CLIENT_SAMPLES_DISABLED, DROP_SFU_SAMPLES_DISABLED, SourceMetrics
from observer.sources.settings import SourceSettings

log = logging.getLogger(__name__)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SamplesIntake:
    def __init__(
        self,
        consumer: SamplesConsumer,
        settings: SourceSettings,
        metrics: SourceMetrics,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self._consumer = consumer
        self._settings = settings
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._received_children: dict[tuple[str, str], Any] = {}

    async def ready(self, transport: str) -> None:
        """Return when the pipeline takes more samples (backpressure, ``maxPendingSamples``)."""
        started = time.monotonic()
        await self._consumer.ready()
        waited = time.monotonic() - started
        if waited > 0.0005:
            self._metrics.backpressure.labels(transport).inc(waited)

    def ingest(
        self, transport: str, decoder: Decoder, data: bytes, service_id: str, media_unit_id: str
    ) -> None:
        """Raises ``SamplesError`` for a frame that does not decode; lets consumer errors propagate."""
        if not data:  # the reference answers an empty REST body with 200 and nothing to do
            return
        received_at_ms = self._clock_ms()
        decoded = decoder.decode(data, received_at_ms if self._settings.use_server_timestamp else None)
        dropped = self._metrics.samples_dropped
        for rejection in decoded.rejected:
            dropped.labels(rejection.reason).inc()
            log.warning(
                "Dropped %s sample #%d of a %s frame from %s/%s: %s %s",
                rejection.kind,
                rejection.index,
                transport,
                service_id,
                media_unit_id,
                rejection.reason.replace("_", " "),
                rejection.field,
            )
        client_samples = decoded.client_samples
        sfu_samples = decoded.sfu_samples
        if client_samples and not self._settings.accept_client_samples:
            dropped.labels(DROP_CLIENT_SAMPLES_DISABLED).inc(len(client_samples))
            log.debug("Dropped %d client samples: acceptClientSamples is false", len(client_samples))
            client_samples = []
        if sfu_samples and not self._settings.accept_sfu_samples:
            dropped.labels(DROP_SFU_SAMPLES_DISABLED).inc(len(sfu_samples))
            log.debug("Dropped %d SFU samples: acceptSfuSamples is false", len(sfu_samples))
            sfu_samples = []
        if not client_samples and not sfu_samples:
            return
        self._consumer.accept(
            ReceivedSamples(service_id, media_unit_id, client_samples, sfu_samples, received_at_ms)
        )
        if client_samples:
            self._received(transport, KIND_CLIENT).inc(len(client_samples))
        if sfu_samples:
            self._received(transport, KIND_SFU).inc(len(sfu_samples))

    def _received(self, transport: str, kind: str) -> Any:
        # the labelled child, looked up once: labels() takes a lock and builds a key on every call
        child = self._received_children.get((transport, kind))
        if child is None:
            child = self._received_children[(transport, kind)] = self._metrics.samples_received.labels(
                transport, kind)
        return child
