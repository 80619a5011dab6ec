"""``POST /rest/samples/{serviceId}/{mediaUnitId}?format=json|protobuf&schemaVersion=X.Y.Z``

One Samples message per request body. 200 (empty body) when the frame decoded, also if some of its
samples were dropped individually. Client errors get a 4xx with a plain-text message:
404 REST source disabled, 415 unsupported Content-Type, 403 serviceId not allowed, 400 bad format /
schemaVersion / undecodable body, 413 body over ``max_payload_bytes``. 500 only for our own failures.

Accepted Content-Types: application/octet-stream (what sfu-monitor-js sends; also assumed when the header
is missing), application/json, application/x-protobuf, application/protobuf. Without a ``format`` query
parameter, a JSON or protobuf Content-Type selects that format (the reference only had the parameter).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from observer.samples import FORMAT_JSON, FORMAT_PROTOBUF, SamplesError, make_decoder
from observer.sources.intake import SamplesIntake
from observer.sources.metrics import (
    REJECT_BAD_PARAMETERS,
    REJECT_CONTENT_TYPE,
    REJECT_DECODE_ERROR,
    REJECT_DISABLED,
    REJECT_INTERNAL_ERROR,
    REJECT_SERVICE_NOT_ALLOWED,
    REJECT_TOO_LARGE,
    TRANSPORT_REST,
    SourceMetrics,
)
from observer.sources.settings import SourceSettings

log = logging.getLogger(__name__)

REST_PATH = "/rest/samples/{serviceId}/{mediaUnitId}"
_READ_CHUNK = 64 * 1024
# Content-Type -> the format it implies when the query has no ``format``
CONTENT_TYPES: dict[str, str | None] = {
    "application/octet-stream": None,
    "application/json": FORMAT_JSON,
    "application/x-protobuf": FORMAT_PROTOBUF,
    "application/protobuf": FORMAT_PROTOBUF,
}


class _BodyTooLarge(Exception):
    pass


class RestSamplesSource:
    def __init__(self, intake: SamplesIntake, settings: SourceSettings, metrics: SourceMetrics) -> None:
        self._intake = intake
        self._settings = settings
        self._metrics = metrics

    def _reject(self, reason: str, status: HTTPStatus, message: str) -> web.Response:
        self._metrics.frames_rejected.labels(TRANSPORT_REST, reason).inc()
        return web.Response(status=status, text=message)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._settings.rest_enabled:
            return self._reject(REJECT_DISABLED, HTTPStatus.NOT_FOUND, "The REST samples source is disabled")
        service_id = request.match_info["serviceId"]
        media_unit_id = request.match_info["mediaUnitId"]
        content_type = (
            request.content_type
        )  # aiohttp reports application/octet-stream when the header is missing
        if content_type not in CONTENT_TYPES:
            return self._reject(
                REJECT_CONTENT_TYPE,
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Unsupported Content-Type: {content_type}. Supported: {', '.join(CONTENT_TYPES)}",
            )
        if not self._settings.service_allowed(service_id):
            log.warning("Refused REST samples for serviceId %r: not in allowedServiceIds", service_id)
            return self._reject(
                REJECT_SERVICE_NOT_ALLOWED,
                HTTPStatus.FORBIDDEN,
                f"The serviceId is not allowed: {service_id}",
            )
        fmt = request.query.get("format") or CONTENT_TYPES[content_type]
        try:
            decoder = make_decoder(fmt, request.query.get("schemaVersion"))
        except SamplesError as exc:
            return self._reject(REJECT_BAD_PARAMETERS, HTTPStatus.BAD_REQUEST, str(exc))
        limit = self._settings.max_payload_bytes
        try:
            body = await self._read_body(request, limit)
        except _BodyTooLarge:
            return self._reject(
                REJECT_TOO_LARGE,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"The body exceeds the limit of {limit} bytes",
            )
        try:
            self._intake.ingest(TRANSPORT_REST, decoder, body, service_id, media_unit_id)
        except SamplesError as exc:
            log.warning("Rejected a REST frame from %s/%s: %s", service_id, media_unit_id, exc)
            return self._reject(REJECT_DECODE_ERROR, HTTPStatus.BAD_REQUEST, str(exc))
        except Exception:
            log.exception("Failed to process a REST frame from %s/%s", service_id, media_unit_id)
            return self._reject(REJECT_INTERNAL_ERROR, HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error")
        await self._intake.ready(TRANSPORT_REST)  # the answer waits while the pipeline is behind
        return web.Response(status=HTTPStatus.OK)

    @staticmethod
    async def _read_body(request: web.Request, limit: int) -> bytes:
        # Read the stream ourselves: the application's client_max_size must not decide this limit.
        declared = request.content_length
        if declared is not None and declared > limit:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)
