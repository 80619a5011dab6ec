"""SocketSink: report envelopes as JSON lines over a plain TCP connection."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from observer.reports.model import Report
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.settings import ConfigReader


class SocketSink(Sink):
    """Config: ``host``, ``port`` (required), ``maxRetry`` (3, the same as ``maxRetries``).

    One envelope JSON per line ("\\n"). A batch is written at once and counts as sent when the kernel
    took it (drain); a broken connection is reopened before the retry."""

    type_name = "SocketSink"
    default_batch = BatchSettings(max_batch_size=1000, max_batch_delay=0.05, max_retries=3)

    def __init__(self, name: str, host: str, port: int, *, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.host = host
        self.port = port
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> SocketSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        host = reader.string("host", allow_empty=False)
        sink = cls(name, host, reader.integer("port", minimum=1, maximum=65535),
                   batch=BatchSettings.read(reader, cls.default_batch, retries_alias="maxRetry"),
                   registry=registry)
        reader.finish()
        return sink

    async def _open(self) -> None:
        _, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    def _reset_after(self, error: BaseException) -> bool:
        return True

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        writer = self._writer
        assert writer is not None
        if writer.is_closing():
            raise ConnectionResetError("connection closed")
        writer.write(b"".join(r.to_json() + b"\n" for r in batch))
        await asyncio.wait_for(writer.drain(), 30)
        return None
