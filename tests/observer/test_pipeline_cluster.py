"""Two observer daemons sharing one hamok grid (in-memory network): the clients of one room land on
different daemons and still get one call, one CALL_STARTED and matches across daemons; expiry is
decided by the leader only and its events come exactly once (DESIGN principle 6, BUG 15)."""

from __future__ import annotations

import asyncio
from collections import Counter

from observer.pipeline import PipelineSettings
from observer.reports.model import Report, ReportType
from observer.repositories import Repositories
from tests.hamok.cluster_util import close_all, formed, start_cluster, wait_until
from tests.observer.test_pipeline_support import (
    Clock,
    Harness,
    event_counts,
    events,
    fixture_frames,
    of_type,
    scenario,
    separated_storage_available,
    short_idle,
)

NAME = "p2p-json"


async def test_bug15_two_daemons_one_call_cross_daemon_matches_and_leader_driven_expiry() -> None:
    grids = await start_cluster(2)
    try:
        await wait_until(lambda: formed(grids), timeout=10)
        clock = Clock()
        settings = PipelineSettings(max_idle=short_idle(5))
        daemons = []
        for grid in grids:
            repos = Repositories.on_grid(grid, separated=separated_storage_available())
            harness = Harness(settings, repositories=repos, clock=clock)
            harness.expirer._is_leader = lambda grid=grid: grid.is_leader  # type: ignore[misc]
            daemons.append(harness)
        alice = scenario(NAME)["expected"]["rooms"][0]["clients"][0]["clientId"]

        # each tick: alice's frame on daemon 0, the other clients' frames on daemon 1, concurrently
        frames = fixture_frames(NAME)
        for start in range(0, len(frames), 3):
            tick = [frame for _, frame in frames[start:start + 3]]
            routed: list[list] = [[], []]
            for frame in tick:
                routed[0 if frame.client_samples[0]["clientId"] == alice else 1].append(frame)
            await asyncio.gather(*(d.feed(*f) for d, f in zip(daemons, routed, strict=True)))
        reports: list[Report] = daemons[0].reports + daemons[1].reports

        counts = event_counts(reports)
        expected = scenario(NAME)["expectedEntityEvents"]
        assert {k: counts[k] for k in expected} == expected
        (call_id,) = {p["callId"] for p in events(reports, "CALL_STARTED")}
        assert {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)} == {call_id}
        assert {p["callId"] for p in of_type(daemons[0].reports, ReportType.OUTBOUND_AUDIO_TRACK)} == {call_id}

        # cross-daemon matches: on the last tick every inbound track knows its remote track
        last_tick = [p for d in daemons for p in of_type(d.reports[-200:], ReportType.INBOUND_AUDIO_TRACK)]
        by_track = {p["trackId"]: p for p in last_tick}
        for match in scenario(NAME)["expected"]["trackMatches"]:
            if match["kind"] != "audio":
                continue
            payload = by_track[match["inbound"]["trackId"]]
            assert payload["remoteTrackId"] == match["outbound"]["trackId"]
            assert payload["remoteClientId"] == match["outbound"]["clientId"]

        # expiry: both daemons run their expirer, only the leader acts
        before = [len(d.reports) for d in daemons]
        clock.advance(6)
        for d in daemons:
            await d.expirer.run_once()
        for d in daemons:
            await d.pipeline.flush()
        expired = [r for d, n in zip(daemons, before, strict=True) for r in d.reports[n:]]
        leader = next(i for i, g in enumerate(grids) if g.is_leader)
        assert daemons[1 - leader].reports[before[1 - leader]:] == []
        counts = Counter(p["name"] for p in events(expired))
        assert counts["CALL_ENDED"] == 1
        assert counts["CLIENT_LEFT"] == 3
        assert counts["PEER_CONNECTION_CLOSED"] == expected["PEER_CONNECTION_OPENED"]
        assert counts["MEDIA_TRACK_REMOVED"] == expected["MEDIA_TRACK_ADDED"]
    finally:
        await close_all(grids)
