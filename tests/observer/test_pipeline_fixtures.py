"""The recorded fixture scenarios through the pipeline on a single-node grid: one callId per room,
the manifest's entity event counts, sample report counts, track matches and SFU pad attributions;
then idle expiry: every client leaves, the call ends once, and the room gets a new call."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from observer.pipeline import PipelineSettings
from observer.reports.events import CallEventName, SfuEventName
from observer.reports.model import Report, ReportType
from tests.observer.test_pipeline_support import (
    Harness,
    event_counts,
    events,
    fixture_frames,
    grid_repositories,
    manifest,
    of_type,
    scenario,
    short_idle,
    single_node_grid,
)

SCENARIOS = ["p2p-json", "sfu-json", "p2p-protobuf", "sfu-protobuf"]
_LIFECYCLE = frozenset(n.value for n in CallEventName) | frozenset(n.value for n in SfuEventName)
_CLIENT_REPORTS = (ReportType.PEER_CONNECTION_TRANSPORT, ReportType.ICE_CANDIDATE_PAIR,
                   ReportType.INBOUND_AUDIO_TRACK, ReportType.INBOUND_VIDEO_TRACK, ReportType.OUTBOUND_AUDIO_TRACK,
                   ReportType.OUTBOUND_VIDEO_TRACK, ReportType.PEER_CONNECTION_DATA_CHANNEL,
                   ReportType.CALL_META_DATA, ReportType.CLIENT_EXTENSION_DATA)


async def _replay(name: str, harness: Harness) -> list[Report]:
    for _, frame in fixture_frames(name):
        harness.pipeline.accept(frame)
    await harness.pipeline.flush()
    return list(harness.reports)


def _expected_rooms(name: str) -> dict[str, set[str]]:
    return {room["roomId"]: {c["clientId"] for c in room["clients"]} for room in scenario(name)["expected"]["rooms"]}


@pytest.mark.parametrize("name", SCENARIOS)
async def test_fixture_scenario_through_the_pipeline(name: str) -> None:
    async with single_node_grid() as grid:
        harness = Harness(repositories=grid_repositories(grid))
        reports = await _replay(name, harness)

    # one callId per room, the one CALL_STARTED announced
    started = {p["roomId"]: p["callId"] for p in events(reports, "CALL_STARTED")}
    assert set(started) == set(_expected_rooms(name))
    per_room: dict[str, set[str]] = {}
    for report_type in _CLIENT_REPORTS:
        for payload in of_type(reports, report_type):
            per_room.setdefault(payload["roomId"], set()).add(payload["callId"])
    assert per_room == {room: {call_id} for room, call_id in started.items()}

    # entity events exactly as the manifest expects (custom events are sample reports)
    lifecycle = Counter({k: v for k, v in event_counts(reports).items() if k in _LIFECYCLE})
    assert lifecycle == Counter(scenario(name)["expectedEntityEvents"])

    # every element became its report
    expected: Counter[str] = Counter()
    for entry in manifest()["files"]:
        if entry["scenario"] == name:
            # "CALL_EVENT(custom)": the custom events a sample carries
            expected.update({k.removesuffix("(custom)"): v for k, v in entry["expectedSampleReports"].items()})
    produced = Counter(r.type.value for r in reports)
    produced["CALL_EVENT"] -= sum(v for k, v in event_counts(reports).items()
                                  if k in _LIFECYCLE and k in CallEventName.__members__)
    produced["SFU_EVENT"] -= sum(v for k, v in event_counts(reports).items()
                                 if k in _LIFECYCLE and k in SfuEventName.__members__)
    assert +produced == +expected

    _assert_track_matches(name, reports)
    if "sfuPadMatches" in scenario(name)["expected"]:
        _assert_pad_attributions(name, reports, started)


def _assert_track_matches(name: str, reports: list[Report]) -> None:
    inbound: dict[str, list[dict[str, Any]]] = {}
    for report_type in (ReportType.INBOUND_AUDIO_TRACK, ReportType.INBOUND_VIDEO_TRACK):
        for payload in of_type(reports, report_type):
            inbound.setdefault(payload["trackId"], []).append(payload)
    matches = scenario(name)["expected"]["trackMatches"]
    assert matches
    for match in matches:
        remote = match["outbound"]
        payloads = inbound[match["inbound"]["trackId"]]
        for payload in payloads:
            assert (payload["remoteClientId"], payload["remoteUserId"], payload["remotePeerConnectionId"],
                    payload["remoteTrackId"]) == (remote["clientId"], remote["userId"],
                                                  remote["peerConnectionId"], remote["trackId"])


def _assert_pad_attributions(name: str, reports: list[Report], started: dict[str, str]) -> None:
    pad_matches = scenario(name)["expected"]["sfuPadMatches"]
    for key, report_type in (("inboundPads", ReportType.SFU_INBOUND_RTP_PAD),
                             ("outboundPads", ReportType.SFU_OUTBOUND_RTP_PAD)):
        by_pad: dict[str, list[dict[str, Any]]] = {}
        for payload in of_type(reports, report_type):
            by_pad.setdefault(payload["rtpPadId"], []).append(payload)
        assert pad_matches[key]
        for pad in pad_matches[key]:
            expect = pad["expect"]
            payloads = by_pad[pad["padId"]]
            # the SFU frames arrive after the clients' in these recordings: every report is attributed
            for payload in payloads:
                assert (payload["clientId"], payload["trackId"], payload["callId"]) == (
                    expect["clientId"], expect["trackId"], started[expect["roomId"]]), pad["padId"]


@pytest.mark.parametrize("name", ["p2p-json", "sfu-json"])
async def test_fixture_scenario_expires_and_the_room_gets_a_new_call(name: str) -> None:
    async with single_node_grid() as grid:
        harness = Harness(PipelineSettings(max_idle=short_idle(5)), repositories=grid_repositories(grid))
        reports = await _replay(name, harness)
        (first_call,) = {p["callId"] for p in events(reports, "CALL_STARTED")}
        expired = await harness.expire(6)
        counts = event_counts(expired)
        clients = set().union(*_expected_rooms(name).values())
        assert counts["CALL_ENDED"] == 1
        assert sorted(p["clientId"] for p in events(expired, "CLIENT_LEFT")) == sorted(clients)
        expected = scenario(name)["expectedEntityEvents"]
        assert counts["PEER_CONNECTION_CLOSED"] == expected["PEER_CONNECTION_OPENED"]
        assert counts["MEDIA_TRACK_REMOVED"] == expected["MEDIA_TRACK_ADDED"]
        if "SFU_JOINED" in expected:
            assert counts["SFU_LEFT"] == expected["SFU_JOINED"]
            assert counts["SFU_RTP_PAD_REMOVED"] == expected["SFU_RTP_PAD_ADDED"]
        for storage_name, storage in harness.repos.items():
            assert await storage.size() == 0, storage_name
        assert await harness.expire(1) == []

        # the same clients come back: a new call for the room
        again = await _replay(name, harness)
        new_reports = again[len(reports) + len(expired):]
        (second_call,) = {p["callId"] for p in events(new_reports, "CALL_STARTED")}
        assert second_call != first_call
        assert event_counts(new_reports)["CLIENT_JOINED"] == len(clients)
