"""WebsocketSink: each report envelope as one JSON text frame to a websocket server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect

from observer.reports.model import Report
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.settings import ConfigReader


class WebsocketSink(Sink):
    """Config: ``uri`` (ws:// or wss://, required), ``maxRetry`` (3: retries of a batch, each after a
    reconnect; the same as ``maxRetries``).

    A report counts as sent once its frame is written to the connection. When the connection breaks in
    the middle of a batch, the rest of the batch goes over the new connection."""

    type_name = "WebsocketSink"
    default_batch = BatchSettings(max_batch_size=500, max_batch_delay=0.05, max_retries=3)

    def __init__(self, name: str, uri: str, *, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.uri = uri
        self._ws: ClientConnection | None = None

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> WebsocketSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        uri = reader.string("uri", allow_empty=False)
        if not uri.startswith(("ws://", "wss://")):
            raise reader.error("uri", f"{uri!r} is not a ws:// or wss:// URI")
        sink = cls(name, uri, batch=BatchSettings.read(reader, cls.default_batch, retries_alias="maxRetry"),
                   registry=registry)
        reader.finish()
        return sink

    async def _open(self) -> None:
        self._ws = await connect(self.uri, open_timeout=5, close_timeout=1, max_queue=1)

    async def _close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def _reset_after(self, error: BaseException) -> bool:
        return True

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        assert self._ws is not None
        for index, report in enumerate(batch):
            try:
                await self._ws.send(report.to_json(), text=True)
            except Exception as exc:
                if index == 0:
                    raise
                return SendOutcome(retry=batch[index:], error=exc)
        return None
