"""Websocket samples source over a real aiohttp server on an ephemeral port: close codes, isolation of
sessions, replay of the recorded scenarios."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMessage, WSMsgType

from observer.sources import SourceSettings
from observer.sources.websocket import MAX_CLOSE_REASON_BYTES, close_reason
from tests.observer.test_samples_fixtures import assert_contains, frame_bytes, manifest, requires_fixtures
from tests.observer.test_sources_rest import Harness, RecordingConsumer, client_frame, client_sample, serve

PATH = "/samples/svc/unit-1"
TIMEOUT = 5


async def _closed(ws: ClientWebSocketResponse) -> WSMessage:
    """The close frame the server sent (skipping keep-alives)."""
    while True:
        message = await ws.receive(timeout=TIMEOUT)
        if message.type != WSMsgType.TEXT:
            assert message.type == WSMsgType.CLOSE, message
            return message


async def _wait_for(predicate: Any) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def _send_and_wait(h: Harness, ws: ClientWebSocketResponse, data: bytes) -> None:
    before = len(h.consumer.received)
    await ws.send_bytes(data)
    await _wait_for(lambda: len(h.consumer.received) > before)


@requires_fixtures
@pytest.mark.parametrize("scenario", sorted(manifest()["scenarios"]))
async def test_recorded_scenario_replays_with_every_frame_accepted(scenario: str) -> None:
    entries = sorted((e for e in manifest()["files"] if e["scenario"] == scenario), key=lambda e: e["order"])
    async with serve() as h:
        sockets: dict[str, ClientWebSocketResponse] = {}
        for entry in entries:
            data = frame_bytes(entry)
            if entry["transport"] == "rest":
                response = await h.client.post(
                    entry["pathQuery"], data=data, headers={"Content-Type": entry["contentType"]}
                )
                assert response.status == 200, await response.text()
                continue
            if entry["connection"] not in sockets:
                sockets[entry["connection"]] = await h.client.ws_connect(entry["pathQuery"])
            await _send_and_wait(h, sockets[entry["connection"]], data)
        assert h.metric("observertc_samples_websocket_sessions") == len(sockets)
        for ws in sockets.values():
            assert not ws.closed
            await ws.close()
        await _wait_for(lambda: h.metric("observertc_samples_websocket_sessions") == 0)

    assert len(h.consumer.received) == len(entries)
    for entry, batch in zip(entries, h.consumer.received, strict=True):
        assert (batch.service_id, batch.media_unit_id) == (entry["serviceId"], entry["mediaUnitId"])
        assert_contains(entry["contains"], batch.client_samples, batch.sfu_samples)
    totals: dict[str, float] = defaultdict(float)
    for entry in entries:
        transport = "rest" if entry["transport"] == "rest" else "websocket"
        totals[transport] += entry["contains"]["clientSamples"] + entry["contains"]["sfuSamples"]
    for transport, total in totals.items():
        counted = sum(
            h.metric("observertc_samples_received_total", transport=transport, kind=kind)
            for kind in ("client", "sfu")
        )
        assert counted == total


async def test_disabled_websocket_closes_with_4229() -> None:
    async with serve(SourceSettings(websocket_enabled=False)) as h:
        ws = await h.client.ws_connect(PATH)
        message = await _closed(ws)
        assert (message.data, message.extra) == (4229, "The websocket is disabled")
        assert h.metric("observertc_samples_websocket_refused_total", reason="disabled") == 1


async def test_not_ready_closes_every_new_session_with_4226_until_ready() -> None:
    ready = False
    async with serve(peers_ready=lambda: ready) as h:
        for _ in range(2):  # the reference stopped checking after the first session: not here
            message = await _closed(await h.client.ws_connect(PATH))
            assert (message.data, message.extra) == (4226, "The service is not ready")
        ready = True
        ws = await h.client.ws_connect(PATH)
        await _send_and_wait(h, ws, client_frame(client_sample()))
        await ws.close()
        assert h.metric("observertc_samples_websocket_refused_total", reason="not_ready") == 2


async def test_failing_readiness_check_closes_with_4227() -> None:
    def broken() -> bool:
        raise RuntimeError("grid exploded")

    async with serve(peers_ready=broken) as h:
        message = await _closed(await h.client.ws_connect(PATH))
        assert message.data == 4227


async def test_service_not_allowed_closes_with_4231() -> None:
    async with serve(SourceSettings(allowed_service_ids={"svc"})) as h:
        message = await _closed(await h.client.ws_connect("/samples/intruder/u"))
        assert (message.data, message.extra) == (4231, "The serviceId is not allowed: intruder")
        ws = await h.client.ws_connect(PATH)
        await _send_and_wait(h, ws, client_frame(client_sample()))
        await ws.close()
        assert h.metric("observertc_samples_websocket_refused_total", reason="service_not_allowed") == 1


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?format=avro", "Unsupported format: avro. Supported formats: json, protobuf"),
        (
            "?schemaVersion=2.0.0",
            "Not valid or not supported schema version: 2.0.0. Supported versions: 2.2.0",
        ),
        (
            "?format=protobuf&schemaVersion=2.1.0",
            "Protobuf samples of schema version 2.1.0 are not supported",
        ),
    ],
)
async def test_bad_format_or_version_closes_at_open_with_4230(query: str, reason: str) -> None:
    async with serve() as h:
        message = await _closed(await h.client.ws_connect(PATH + query))
        assert message.data == 4230
        assert isinstance(message.extra, str) and message.extra.startswith(reason)
        assert len(message.extra.encode()) <= MAX_CLOSE_REASON_BYTES
        assert h.metric("observertc_samples_websocket_refused_total", reason="bad_parameters") == 1


async def test_bad_frame_closes_only_its_own_session_with_4230() -> None:
    async with serve() as h:
        good = await h.client.ws_connect(PATH)
        bad = await h.client.ws_connect(PATH + "?format=protobuf")
        await _send_and_wait(h, good, client_frame(client_sample("first")))
        await bad.send_bytes(b"\xff\xff\xff\xff")
        message = await _closed(bad)
        assert message.data == 4230 and isinstance(message.extra, str)
        assert message.extra.startswith("Failed to decode protobuf Samples")
        await _send_and_wait(h, good, client_frame(client_sample("second")))
        assert [s["clientId"] for s in h.consumer.client_samples] == ["first", "second"]
        assert h.rejected_frames("websocket", "decode_error") == 1
        await good.close()


async def test_a_frame_with_invalid_samples_keeps_the_session_open() -> None:
    async with serve() as h:
        ws = await h.client.ws_connect(PATH)
        await _send_and_wait(h, ws, client_frame({"roomId": "r", "timestamp": 1}, client_sample("ok")))
        await _send_and_wait(h, ws, client_frame(client_sample("next")))
        assert [s["clientId"] for s in h.consumer.client_samples] == ["ok", "next"]
        assert h.metric("observertc_samples_dropped_total", reason="missing_field") == 1
        assert not ws.closed
        await ws.close()


async def test_text_frames_carry_json_too() -> None:
    async with serve() as h:
        ws = await h.client.ws_connect(PATH + "?format=json&schemaVersion=2.2.0")
        await ws.send_str(client_frame(client_sample("texty")).decode())
        await _wait_for(lambda: len(h.consumer.received) == 1)
        assert h.consumer.client_samples[0]["clientId"] == "texty"
        await ws.close()


async def test_consumer_failure_closes_with_4227() -> None:
    async with serve(consumer=RecordingConsumer(fail=True)) as h:
        ws = await h.client.ws_connect(PATH)
        await ws.send_bytes(client_frame(client_sample()))
        message = await _closed(ws)
        assert (message.data, message.extra) == (4227, "Internal error")
        assert h.rejected_frames("websocket", "internal_error") == 1


async def test_oversized_message_closes_with_1009() -> None:
    async with serve(SourceSettings(max_payload_bytes=1000)) as h:
        other = await h.client.ws_connect(PATH)
        ws = await h.client.ws_connect(PATH)
        await ws.send_bytes(client_frame(client_sample(padding="x" * 2000)))
        message = await _closed(ws)
        assert message.data == 1009
        assert h.rejected_frames("websocket", "too_large") == 1
        await _send_and_wait(h, other, client_frame(client_sample()))
        await other.close()


async def test_default_limit_accepts_large_frames_and_refuses_over_a_million_bytes() -> None:
    async with serve() as h:
        ws = await h.client.ws_connect(PATH)
        await _send_and_wait(h, ws, client_frame(client_sample(padding="x" * 900_000)))
        await ws.send_bytes(client_frame(client_sample(padding="x" * 1_000_000)))
        assert (await _closed(ws)).data == 1009


async def test_keepalive_text_frame_follows_an_accepted_message_after_the_interval() -> None:
    async with serve(SourceSettings(keepalive_interval_s=0)) as h:
        ws = await h.client.ws_connect(PATH)
        await ws.send_bytes(client_frame(client_sample()))
        message = await ws.receive(timeout=TIMEOUT)
        assert (message.type, message.data) == (WSMsgType.TEXT, "message")
        await ws.close()
    async with serve() as h:  # default 60 s: nothing is sent back
        ws = await h.client.ws_connect(PATH)
        await _send_and_wait(h, ws, client_frame(client_sample()))
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.2)
        await ws.close()


async def test_server_timestamp_and_path_ids_reach_the_consumer() -> None:
    async with serve(SourceSettings(use_server_timestamp=True)) as h:
        ws = await h.client.ws_connect("/samples/my-service/my-unit")
        await _send_and_wait(h, ws, client_frame(client_sample(timestamp=3)))
        [batch] = h.consumer.received
        assert (batch.service_id, batch.media_unit_id) == ("my-service", "my-unit")
        assert batch.client_samples[0]["timestamp"] == batch.received_at_ms
        await ws.close()


async def test_shutdown_closes_open_sessions_with_1001() -> None:
    async with serve() as h:
        ws = await h.client.ws_connect(PATH)
        await _wait_for(lambda: h.metric("observertc_samples_websocket_sessions") == 1)
        await h.sources.websocket.close_all()
        assert (await _closed(ws)).data == 1001
        await _wait_for(lambda: h.metric("observertc_samples_websocket_sessions") == 0)


def test_close_reason_is_cut_to_123_bytes_without_splitting_a_character() -> None:
    assert close_reason("short") == b"short"
    cut = close_reason("é" * 100)  # 200 bytes of 2-byte characters
    assert len(cut) == 122 and cut.decode() == "é" * 61
    assert len(close_reason("x" * 500)) == MAX_CLOSE_REASON_BYTES


async def test_a_session_reads_no_further_while_the_consumer_is_full() -> None:
    async with serve() as h:
        ws = await h.client.ws_connect(PATH)
        h.consumer.room.clear()
        await _send_and_wait(h, ws, client_frame(client_sample("a")))
        await ws.send_bytes(client_frame(client_sample("b")))
        await asyncio.sleep(0.1)
        assert [b.client_samples[0]["clientId"] for b in h.consumer.received] == ["a"]
        h.consumer.room.set()
        await _wait_for(lambda: len(h.consumer.received) == 2)
        assert h.consumer.received[1].client_samples[0]["clientId"] == "b"
        assert h.metric("observertc_samples_backpressure_seconds_total", transport="websocket") >= 0.1
        assert not ws.closed
        await ws.close()
