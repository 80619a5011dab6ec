"""REST samples source over a real aiohttp server on an ephemeral port.

``RecordingConsumer`` and ``serve()`` are shared with the websocket tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from observer.samples import ReceivedSamples
from observer.samples import samples_pb2 as pb
from observer.sources import SamplesSources, SourceSettings
from tests.observer.test_samples_fixtures import (
    assert_contains,
    frame_bytes,
    frame_id,
    manifest_files,
    requires_fixtures,
)


class RecordingConsumer:
    def __init__(self, fail: bool = False) -> None:
        self.received: list[ReceivedSamples] = []
        self.fail = fail
        self.room = asyncio.Event()  # cleared: the consumer is full (backpressure)
        self.room.set()

    def accept(self, samples: ReceivedSamples) -> None:
        if self.fail:
            raise RuntimeError("pipeline exploded")
        self.received.append(samples)

    async def ready(self) -> None:
        await self.room.wait()

    @property
    def client_samples(self) -> list[dict[str, Any]]:
        return [s for batch in self.received for s in batch.client_samples]

    @property
    def sfu_samples(self) -> list[dict[str, Any]]:
        return [s for batch in self.received for s in batch.sfu_samples]


@attrs.define
class Harness:
    client: TestClient[Any, Any]
    consumer: RecordingConsumer
    registry: CollectorRegistry
    sources: SamplesSources

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def rejected_frames(self, transport: str, reason: str) -> float:
        return self.metric("observertc_samples_frames_rejected_total", transport=transport, reason=reason)


@contextlib.asynccontextmanager
async def serve(
    settings: SourceSettings | None = None,
    consumer: RecordingConsumer | None = None,
    peers_ready: Any = None,
) -> AsyncIterator[Harness]:
    consumer = consumer or RecordingConsumer()
    registry = CollectorRegistry()
    sources = SamplesSources(consumer, settings or SourceSettings(), peers_ready, registry)
    app = web.Application()
    sources.add_routes(app)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        client: TestClient[Any, Any] = TestClient(server)
        async with client:
            yield Harness(client, consumer, registry, sources)


def client_frame(*samples: dict[str, Any], sfu: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps({"clientSamples": list(samples), "sfuSamples": sfu or []})


def client_sample(client_id: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {"clientId": client_id, "roomId": "room-1", "timestamp": 1700000000000, **fields}


PATH = "/rest/samples/svc/unit-1"
OCTETS = {"Content-Type": "application/octet-stream"}


@requires_fixtures
@pytest.mark.parametrize("entry", manifest_files(), ids=frame_id)
async def test_every_recorded_frame_is_accepted_over_rest(entry: dict[str, Any]) -> None:
    path_query = entry["pathQuery"]
    if not path_query.startswith("/rest/"):
        path_query = "/rest" + path_query
    async with serve() as h:
        response = await h.client.post(path_query, data=frame_bytes(entry), headers=OCTETS)
        assert response.status == 200, await response.text()
        [batch] = h.consumer.received
        assert (batch.service_id, batch.media_unit_id) == (entry["serviceId"], entry["mediaUnitId"])
        assert_contains(entry["contains"], batch.client_samples, batch.sfu_samples)
        kind = "client" if entry["contains"]["clientSamples"] else "sfu"
        count = entry["contains"][f"{kind}Samples"]
        assert h.metric("observertc_samples_received_total", transport="rest", kind=kind) == count


async def test_disabled_rest_source_answers_404() -> None:
    async with serve(SourceSettings(rest_enabled=False)) as h:
        response = await h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS)
        assert response.status == 404
        assert "disabled" in await response.text()
        assert h.consumer.received == []
        assert h.rejected_frames("rest", "disabled") == 1


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "application/json", "application/json; charset=utf-8", None],
)
async def test_json_body_is_accepted_with_each_content_type(content_type: str | None) -> None:
    async with serve() as h:
        if content_type is None:
            response = await h.client.post(
                PATH, data=client_frame(client_sample()), skip_auto_headers=["Content-Type"]
            )
        else:
            response = await h.client.post(
                PATH, data=client_frame(client_sample()), headers={"Content-Type": content_type}
            )
        assert response.status == 200, await response.text()
        assert [s["clientId"] for s in h.consumer.client_samples] == ["c-1"]


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/protobuf"])
async def test_protobuf_content_type_selects_protobuf_without_format(content_type: str) -> None:
    frame = pb.Samples()
    frame.clientSamples.add(clientId="c-9", roomId="r", timestamp=5)
    async with serve() as h:
        response = await h.client.post(
            PATH, data=frame.SerializeToString(), headers={"Content-Type": content_type}
        )
        assert response.status == 200, await response.text()
        assert [s["clientId"] for s in h.consumer.client_samples] == ["c-9"]


async def test_format_parameter_wins_over_content_type() -> None:
    async with serve() as h:
        response = await h.client.post(
            PATH + "?format=json",
            data=client_frame(client_sample()),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml"])
async def test_unsupported_content_type_answers_415(content_type: str) -> None:
    async with serve() as h:
        response = await h.client.post(
            PATH, data=client_frame(client_sample()), headers={"Content-Type": content_type}
        )
        assert response.status == 415
        assert "Unsupported Content-Type" in await response.text()
        assert h.consumer.received == []


async def test_service_not_allowed_answers_403_and_allowed_passes() -> None:
    async with serve(SourceSettings(allowed_service_ids=["svc"])) as h:
        denied = await h.client.post(
            "/rest/samples/intruder/u", data=client_frame(client_sample()), headers=OCTETS
        )
        assert denied.status == 403
        assert await denied.text() == "The serviceId is not allowed: intruder"
        allowed = await h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS)
        assert allowed.status == 200
        assert [b.service_id for b in h.consumer.received] == ["svc"]
        assert h.rejected_frames("rest", "service_not_allowed") == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?format=avro", "Unsupported format: avro"),
        ("?format=json&schemaVersion=2.0.4", "Not valid or not supported schema version: 2.0.4"),
        ("?schemaVersion=banana", "Not a valid schema version"),
        ("?format=protobuf&schemaVersion=2.1.3", "field numbering differs"),
    ],
)
async def test_bad_query_parameters_answer_400_with_the_reason(query: str, message: str) -> None:
    async with serve() as h:
        response = await h.client.post(PATH + query, data=client_frame(client_sample()), headers=OCTETS)
        assert response.status == 400
        assert message in await response.text()
        assert h.rejected_frames("rest", "bad_parameters") == 1


@pytest.mark.parametrize(
    ("query", "body"),
    [("", b"{not json"), ("", b"[1, 2]"), ("?format=protobuf", b"\xff\xff\xff\xff"), ("", b"\xc3\x28")],
)
async def test_undecodable_body_answers_400_and_never_500(query: str, body: bytes) -> None:
    async with serve() as h:
        response = await h.client.post(PATH + query, data=body, headers=OCTETS)
        assert response.status == 400
        assert "Failed to decode" in await response.text()
        assert h.consumer.received == []
        assert h.rejected_frames("rest", "decode_error") == 1


async def test_oversized_body_answers_413() -> None:
    body = client_frame(client_sample(padding="x" * 2000))
    async with serve(SourceSettings(max_payload_bytes=1000)) as h:
        response = await h.client.post(PATH, data=body, headers=OCTETS)
        assert response.status == 413
        assert "1000 bytes" in await response.text()
        assert h.rejected_frames("rest", "too_large") == 1

        async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
            for start in range(0, len(body), 300):
                yield body[start : start + 300]

        response = await h.client.post(PATH, data=chunks(), headers=OCTETS)
        assert response.status == 413
        assert h.consumer.received == []
        small = await h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS)
        assert small.status == 200


async def test_limit_is_max_payload_bytes_not_the_application_default() -> None:
    body = client_frame(client_sample(padding="x" * 1_500_000))
    async with serve(SourceSettings(max_payload_bytes=2_000_000)) as h:
        response = await h.client.post(PATH, data=io.BytesIO(body), headers=OCTETS)
        assert response.status == 200, await response.text()
        assert len(h.consumer.client_samples) == 1


async def test_empty_body_is_accepted_without_samples() -> None:
    async with serve() as h:
        response = await h.client.post(PATH, data=b"", headers=OCTETS)
        assert response.status == 200
        assert h.consumer.received == []


async def test_invalid_samples_are_dropped_individually_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = client_frame(
        client_sample("a"),
        {"roomId": "room-1", "timestamp": 1},
        client_sample("c", inboundAudioTracks=[{"ssrc": "not-a-number"}]),
        sfu=[{"timestamp": 1}, {"sfuId": "s-1", "timestamp": 2}],
    )
    async with serve() as h:
        with caplog.at_level(logging.WARNING, logger="observer.sources"):
            response = await h.client.post(PATH, data=frame, headers=OCTETS)
        assert response.status == 200
        [batch] = h.consumer.received
        assert [s["clientId"] for s in batch.client_samples] == ["a"]
        assert [s["sfuId"] for s in batch.sfu_samples] == ["s-1"]
        assert h.metric("observertc_samples_dropped_total", reason="missing_field") == 2
        assert h.metric("observertc_samples_dropped_total", reason="invalid_field") == 1
        assert h.metric("observertc_samples_received_total", transport="rest", kind="client") == 1
        logged = caplog.text
        assert "clientId" in logged and "inboundAudioTracks[0].ssrc" in logged and "sfuId" in logged


async def test_consumer_failure_answers_500_and_the_source_keeps_serving() -> None:
    consumer = RecordingConsumer(fail=True)
    async with serve(consumer=consumer) as h:
        response = await h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS)
        assert response.status == 500
        assert await response.text() == "Internal error"
        consumer.fail = False
        response = await h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS)
        assert response.status == 200
        assert len(consumer.received) == 1


async def test_disabled_sample_kinds_are_dropped_and_counted() -> None:
    frame = client_frame(client_sample(), sfu=[{"sfuId": "s-1", "timestamp": 2}])
    async with serve(SourceSettings(accept_client_samples=False)) as h:
        assert (await h.client.post(PATH, data=frame, headers=OCTETS)).status == 200
        [batch] = h.consumer.received
        assert (batch.client_samples, [s["sfuId"] for s in batch.sfu_samples]) == ([], ["s-1"])
        assert h.metric("observertc_samples_dropped_total", reason="client_samples_not_accepted") == 1
    async with serve(SourceSettings(accept_client_samples=False, accept_sfu_samples=False)) as h:
        assert (await h.client.post(PATH, data=frame, headers=OCTETS)).status == 200
        assert h.consumer.received == []
        assert h.metric("observertc_samples_dropped_total", reason="sfu_samples_not_accepted") == 1


async def test_use_server_timestamp_replaces_sample_timestamps() -> None:
    frame = client_frame(client_sample(timestamp=1.5), sfu=[{"sfuId": "s-1", "timestamp": 2}])
    async with serve(SourceSettings(use_server_timestamp=True)) as h:
        assert (await h.client.post(PATH, data=frame, headers=OCTETS)).status == 200
        [batch] = h.consumer.received
        assert batch.received_at_ms > 1_600_000_000_000
        assert [s["timestamp"] for s in batch.client_samples + batch.sfu_samples] == [
            batch.received_at_ms
        ] * 2
    async with serve() as h:
        assert (await h.client.post(PATH, data=frame, headers=OCTETS)).status == 200
        [batch] = h.consumer.received
        assert [s["timestamp"] for s in batch.client_samples + batch.sfu_samples] == [1, 2]


async def test_the_answer_waits_while_the_consumer_is_full() -> None:
    async with serve() as h:
        h.consumer.room.clear()
        post = asyncio.ensure_future(h.client.post(PATH, data=client_frame(client_sample()), headers=OCTETS))
        for _ in range(100):
            if h.consumer.received:
                break
            await asyncio.sleep(0.01)
        assert len(h.consumer.received) == 1  # taken, the answer held back
        await asyncio.sleep(0.05)
        assert not post.done()
        h.consumer.room.set()
        response = await asyncio.wait_for(post, 5)
        assert response.status == 200
        assert h.metric("observertc_samples_backpressure_seconds_total", transport="rest") >= 0.05
