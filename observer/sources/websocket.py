"""``ws://HOST:PORT/samples/{serviceId}/{mediaUnitId}?format=json|protobuf&schemaVersion=X.Y.Z``

One Samples message per websocket message (binary, or text holding the UTF-8 bytes). The query is read
once, at open. Close codes (client-monitor-js treats 4224-4231 as "closed by the observer"):

- 4229 the websocket source is disabled;
- 4226 the service is not ready (``peers_ready()`` is false; asked for every new session);
- 4231 the serviceId is not in ``allowedServiceIds``. The reference had no such close (it dropped the samples
  silently at flush time); 4231 is its unused "invalid token" code, the closest meaning in the range the
  monitors already treat as final;
- 4230 invalid input: unsupported format or schemaVersion at open, or a message that does not decode
  (the reason is the error message, cut to the 123-byte limit of a close reason);
- 4227 internal error while handing samples to the pipeline;
- 1009 a message larger than ``max_payload_bytes`` (closed by aiohttp's reader before it buffers the payload).

A failing message closes only its own session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import WSMsgType, web

from observer.samples import Decoder, SamplesError, make_decoder
from observer.sources.intake import SamplesIntake
from observer.sources.metrics import (
    REJECT_BAD_PARAMETERS,
    REJECT_DECODE_ERROR,
    REJECT_DISABLED,
    REJECT_INTERNAL_ERROR,
    REJECT_NOT_READY,
    REJECT_PROTOCOL_ERROR,
    REJECT_SERVICE_NOT_ALLOWED,
    REJECT_TOO_LARGE,
    TRANSPORT_WEBSOCKET,
    SourceMetrics,
)
from observer.sources.settings import SourceSettings

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/samples/{serviceId}/{mediaUnitId}"

CLOSE_NOT_READY = 4226
CLOSE_INTERNAL_ERROR = 4227
CLOSE_DISABLED = 4229
CLOSE_INVALID_INPUT = 4230
CLOSE_SERVICE_NOT_ALLOWED = 4231
CLOSE_TOO_LARGE = 1009
CLOSE_GOING_AWAY = 1001
MAX_CLOSE_REASON_BYTES = 123
KEEPALIVE_TEXT = "message"


def close_reason(text: str) -> bytes:
    """``text`` as UTF-8, cut to the close-frame limit without splitting a character."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()


class WebsocketSamplesSource:
    def __init__(
        self,
        intake: SamplesIntake,
        settings: SourceSettings,
        metrics: SourceMetrics,
        peers_ready: Callable[[], bool] | None = None,
    ) -> None:
        self._intake = intake
        self._settings = settings
        self._metrics = metrics
        self._peers_ready = peers_ready
        self._sessions: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self._settings.max_payload_bytes)
        await ws.prepare(request)
        service_id = request.match_info["serviceId"]
        media_unit_id = request.match_info["mediaUnitId"]
        decoder = await self._open(ws, request, service_id)
        if decoder is None:
            return ws
        self._sessions.add(ws)
        self._metrics.websocket_sessions.inc()
        try:
            await self._serve(ws, decoder, service_id, media_unit_id)
        finally:
            self._sessions.discard(ws)
            self._metrics.websocket_sessions.dec()
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, reason: str, code: int, message: str) -> None:
        self._metrics.websocket_refused.labels(reason).inc()
        log.warning("Refused a samples websocket with %d: %s", code, message)
        await ws.close(code=code, message=close_reason(message))

    async def _open(self, ws: web.WebSocketResponse, request: web.Request, service_id: str) -> Decoder | None:
        if not self._settings.websocket_enabled:
            await self._refuse(ws, REJECT_DISABLED, CLOSE_DISABLED, "The websocket is disabled")
            return None
        try:
            ready = self._peers_ready is None or self._peers_ready()
        except Exception:
            log.exception("Readiness check failed")
            await self._refuse(ws, REJECT_INTERNAL_ERROR, CLOSE_INTERNAL_ERROR, "Internal error")
            return None
        if not ready:
            await self._refuse(ws, REJECT_NOT_READY, CLOSE_NOT_READY, "The service is not ready")
            return None
        if not self._settings.service_allowed(service_id):
            await self._refuse(
                ws,
                REJECT_SERVICE_NOT_ALLOWED,
                CLOSE_SERVICE_NOT_ALLOWED,
                f"The serviceId is not allowed: {service_id}",
            )
            return None
        try:
            return make_decoder(request.query.get("format"), request.query.get("schemaVersion"))
        except SamplesError as exc:
            await self._refuse(ws, REJECT_BAD_PARAMETERS, CLOSE_INVALID_INPUT, str(exc))
            return None

    async def _serve(
        self, ws: web.WebSocketResponse, decoder: Decoder, service_id: str, media_unit_id: str
    ) -> None:
        rejected = self._metrics.frames_rejected
        last_keepalive = time.monotonic()
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                data = message.data
            elif message.type == WSMsgType.TEXT:
                data = message.data.encode()
            elif message.type == WSMsgType.ERROR:
                # aiohttp has already closed the session (1009 for an oversized message)
                too_large = getattr(message.data, "code", None) == CLOSE_TOO_LARGE
                rejected.labels(
                    TRANSPORT_WEBSOCKET, REJECT_TOO_LARGE if too_large else REJECT_PROTOCOL_ERROR
                ).inc()
                log.warning(
                    "Closed the samples websocket of %s/%s: %s", service_id, media_unit_id, message.data
                )
                return
            else:
                continue
            try:
                self._intake.ingest(TRANSPORT_WEBSOCKET, decoder, data, service_id, media_unit_id)
            except SamplesError as exc:
                rejected.labels(TRANSPORT_WEBSOCKET, REJECT_DECODE_ERROR).inc()
                log.warning("Rejected a websocket frame from %s/%s: %s", service_id, media_unit_id, exc)
                await ws.close(code=CLOSE_INVALID_INPUT, message=close_reason(str(exc)))
                return
            except Exception:
                rejected.labels(TRANSPORT_WEBSOCKET, REJECT_INTERNAL_ERROR).inc()
                log.exception("Failed to process a websocket frame from %s/%s", service_id, media_unit_id)
                await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"Internal error")
                return
            await self._intake.ready(TRANSPORT_WEBSOCKET)  # not reading on while the pipeline is behind
            now = time.monotonic()
            if now - last_keepalive > self._settings.keepalive_interval_s:
                last_keepalive = now
                try:
                    await ws.send_str(KEEPALIVE_TEXT)
                except ConnectionResetError:  # the client went away meanwhile
                    return

    async def close_all(self) -> None:
        """Close every open session (application shutdown)."""
        for ws in list(self._sessions):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"The observer is shutting down")
