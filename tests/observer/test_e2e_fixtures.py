"""End to end: a running observer (real HTTP/websocket servers, single-node hamok grid, FileSink)
fed with every recorded frame of ../shared/fixtures. Checks the manifest's expectations: ids,
one callId per room, entity events exactly once, track matches, SFU pad attribution, and, with
the shortest idle times the config allows, one end event per entity."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from observer.app import ObserverApp
from observer.config import load_config
from tests.observer.replay import MANIFEST_DATA, event_counts, read_reports, replay, scenario_files

SCENARIOS = sorted(MANIFEST_DATA["scenarios"])
END_OF = {
    "CALL_STARTED": "CALL_ENDED",
    "CLIENT_JOINED": "CLIENT_LEFT",
    "PEER_CONNECTION_OPENED": "PEER_CONNECTION_CLOSED",
    "MEDIA_TRACK_ADDED": "MEDIA_TRACK_REMOVED",
    "SFU_JOINED": "SFU_LEFT",
    "SFU_TRANSPORT_OPENED": "SFU_TRANSPORT_CLOSED",
    "SFU_RTP_PAD_ADDED": "SFU_RTP_PAD_REMOVED",
    "SFU_SCTP_STREAM_ADDED": "SFU_SCTP_STREAM_REMOVED",
}


def observer_config(tmp: Path, **observer: Any) -> Any:
    idle = 3  # the smallest idle time the seed allows (@Min(3))
    block = {
        "sinks": {"file": {"type": "FileSink", "config": {"path": str(tmp / "reports.jsonl")}}},
        "buffers": {"samplesCollector": {"maxItems": 100, "maxTimeInMs": 20},
                    "reportsCollector": {"maxItems": 500, "maxTimeInMs": 50},
                    "debouncers": {"maxItems": 100, "maxTimeInMs": 50}},
        "repository": {k: idle for k in (
            "callMaxIdleTimeInS", "clientsMaxIdle", "peerConnectionsMaxIdle", "inboundTracksMaxIdle",
            "outboundTracksMaxIdle", "sfuMaxIdleTimeInS", "sfuTransportMaxIdleTimeInS",
            "sfuInboundRtpPadMaxIdleTimeInS", "sfuOutboundRtpPadMaxIdleTimeInS", "sfuSctpChannelMaxIdleTimeInS")},
    }
    block.update(observer)
    return load_config(None, env={}, overrides={
        "micronaut": {"server": {"port": 0}}, "endpoints": {"all": {"port": 0}}, "observer": block})


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


def expected_sample_reports(scenario: str) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for entry in scenario_files(scenario):
        total.update(entry.get("expectedSampleReports") or {})
    return total


def check_scenario(scenario: str, reports: list[dict[str, Any]], *, ended: bool) -> None:
    spec = MANIFEST_DATA["scenarios"][scenario]
    expected = spec["expected"]
    service = spec["serviceId"]
    room_ids = {room["roomId"] for room in expected["rooms"]}
    mine = [r for r in reports if r["payload"].get("serviceId") == service and (
        r["payload"].get("roomId") in room_ids or (r["type"].startswith("SFU")
        and r["payload"].get("sfuId") in {s["sfuId"] for s in expected.get("sfus", [])}))]
    # one callId per room, carried by every client report of that room
    for room in room_ids:
        call_ids = {r["payload"].get("callId") for r in mine if r["payload"].get("roomId") == room}
        assert len(call_ids) == 1 and None not in call_ids, (room, call_ids)
    # entity events exactly once (and, after idle, their end events exactly once)
    counts = event_counts(mine)
    for name, count in spec["expectedEntityEvents"].items():
        assert counts[name] == count, (scenario, name, counts[name], count)
        if ended:
            assert counts[END_OF[name]] == count, (scenario, END_OF[name], counts[END_OF[name]], count)
    # every sample report the manifest expects, per type
    lifecycle = set(END_OF) | set(END_OF.values())
    got = collections.Counter(
        f"{r['type']}(custom)" if r["type"] in ("CALL_EVENT", "SFU_EVENT") else r["type"]
        for r in mine if r["type"] not in ("CALL_EVENT", "SFU_EVENT") or r["payload"]["name"] not in lifecycle)
    want = expected_sample_reports(scenario)
    for rtype, n in want.items():
        assert got[rtype] == n, (scenario, rtype, got[rtype], n)
    # inbound -> remote outbound matches
    inbound = {(r["payload"]["trackId"]): r["payload"] for r in mine
               if r["type"] in ("INBOUND_AUDIO_TRACK", "INBOUND_VIDEO_TRACK")}
    for match in expected.get("trackMatches", []):
        report = inbound[match["inbound"]["trackId"]]
        out = match["outbound"]
        assert (report["remoteClientId"], report["remoteTrackId"], report["remotePeerConnectionId"],
                report["remoteUserId"]) == (out["clientId"], out["trackId"], out["peerConnectionId"],
                                            out["userId"]), match
    # SFU pads attributed to the client tracks
    pads = {r["payload"]["rtpPadId"]: r["payload"] for r in mine
            if r["type"] in ("SFU_INBOUND_RTP_PAD", "SFU_OUTBOUND_RTP_PAD")}
    for direction in ("inboundPads", "outboundPads"):
        for pad in expected.get("sfuPadMatches", {}).get(direction, []):
            report = pads[pad["padId"]]
            assert report["clientId"] == pad["expect"]["clientId"], pad
            assert report["trackId"] == pad["expect"]["trackId"], pad
            assert report["callId"] is not None


@pytest.mark.parametrize("transport", [None, "rest"], ids=["as-recorded", "all-over-rest"])
async def test_every_fixture_scenario_end_to_end(tmp_path: Path, transport: str | None) -> None:
    app = ObserverApp(observer_config(tmp_path))
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.samples_port}"
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(replay(s, base, transport=transport, session=session) for s in SCENARIOS))
        path = tmp_path / "reports.jsonl"

        def all_started() -> bool:
            counts = event_counts(read_reports([path]))
            return counts["CALL_STARTED"] == len(SCENARIOS) and counts["CLIENT_JOINED"] == 12

        await wait_for(all_started)
        await asyncio.sleep(0.3)
        reports = read_reports([path])
        for scenario in SCENARIOS:
            check_scenario(scenario, reports, ended=False)

        def all_ended() -> bool:
            counts = event_counts(read_reports([path]))
            return counts["CALL_ENDED"] >= len(SCENARIOS) and counts["SFU_LEFT"] >= 2

        await wait_for(all_ended, timeout=30)
        await asyncio.sleep(1.0)  # anything emitted twice would arrive now
        reports = read_reports([path])
        for scenario in SCENARIOS:
            check_scenario(scenario, reports, ended=True)
    finally:
        await app.stop()
