"""Observer daemons sharing one hamok grid (in-memory network): the clients of one room land on
different daemons and still get one call, one CALL_STARTED and matches across daemons; expiry is
decided by the leader only and its events come exactly once (DESIGN principle 6, BUG 15); a daemon
lost without backups leaves its calls and clients to the lifecycle journal (docs/cluster.md)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hamok import StorageGrid
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


# --------------------------------------------------------------------------- a daemon lost, no backups
FAST = {"heartbeat_ms": 20, "follower_max_idle_ms": 100, "peer_max_idle_ms": 300}
OPENING = ("CALL_STARTED", "CLIENT_JOINED", "PEER_CONNECTION_OPENED", "MEDIA_TRACK_ADDED")
CLOSING = {"CALL_STARTED": "CALL_ENDED", "CLIENT_JOINED": "CLIENT_LEFT",
           "PEER_CONNECTION_OPENED": "PEER_CONNECTION_CLOSED", "MEDIA_TRACK_ADDED": "MEDIA_TRACK_REMOVED"}


async def _daemons(n: int, clock: Clock, *, backups: bool = False) -> tuple[list[StorageGrid], list[Harness]]:
    grids = await start_cluster(n, **FAST)
    await wait_until(lambda: formed(grids), timeout=10)
    settings = PipelineSettings(max_idle=short_idle(5))
    daemons = []
    for grid in grids:
        repos = Repositories.on_grid(grid, use_backups=backups)
        harness = Harness(settings, repositories=repos, clock=clock)
        harness.expirer._is_leader = lambda grid=grid: grid.is_leader  # type: ignore[misc]
        daemons.append(harness)
    return grids, daemons


async def _lose(grids: list[StorageGrid], index: int) -> None:
    """SIGKILL without backups: the daemon's endpoint stops, its separated entries are gone."""
    await grids[index].endpoint.stop()
    survivors = [g for i, g in enumerate(grids) if i != index]
    members = frozenset(g.local_id for g in survivors)
    await wait_until(lambda: all(g.members == members and g.leader_id in members for g in survivors), timeout=10)


async def _expire(daemons: list[Harness], clock: Clock, seconds: float) -> list[Report]:
    clock.advance(seconds)
    before = [len(d.reports) for d in daemons]
    await asyncio.gather(*(d.expirer.run_once() for d in daemons))
    for d in daemons:
        await d.pipeline.flush()
    return [r for d, n in zip(daemons, before, strict=True) for r in d.reports[n:]]


def _opened(reports: list[Report]) -> dict[str, int]:
    counts = event_counts(reports)
    return {name: counts[name] for name in OPENING}


@pytest.mark.parametrize("backups", [False, True], ids=["no-backups", "backups"])
async def test_clients_of_a_lost_daemon_continue_on_the_survivor_without_a_second_start(backups: bool) -> None:
    """The daemon that holds the call and every client is lost; the clients continue on the other
    one: same callId, no second CALL_STARTED/CLIENT_JOINED/..., and everything ends once. With
    backups the survivor restores the entities itself, and the journal entries stay with them."""
    clock = Clock()
    grids, daemons = await _daemons(2, clock, backups=backups)
    try:
        frames = [frame for _, frame in fixture_frames(NAME)]
        half = len(frames) // 2
        for frame in frames[:half]:
            await daemons[1].feed(frame)
        (call_id,) = {p["callId"] for p in events(daemons[1].reports, "CALL_STARTED")}
        if backups:
            lost_backups = daemons[1].repos.backups
            assert lost_backups is not None
            await lost_backups.flush()
        await _lose(grids, 1)
        if backups:
            await wait_until(lambda: daemons[0].repos.calls.local_size() == 1, timeout=10)
        for frame in frames[half:]:
            await daemons[0].feed(frame)
        reports = daemons[0].reports + daemons[1].reports
        expected = scenario(NAME)["expectedEntityEvents"]
        assert _opened(reports) == {name: expected[name] for name in OPENING}
        assert {p["callId"] for p in events(reports)} == {call_id}
        assert {p["callId"] for p in of_type(daemons[0].reports, ReportType.OUTBOUND_AUDIO_TRACK)} == {call_id}
        # without backups the clients come back from the journal; with backups they are there already
        assert daemons[0].pipeline.metrics.restored.labels("client")._value.get() == (0 if backups else 3)

        ended = await _expire(daemons[:1], clock, 6) + await _expire(daemons[:1], clock, 6)
        assert event_counts(ended) == Counter({CLOSING[name]: expected[name] for name in OPENING})
        assert await _expire(daemons[:1], clock, 10) == []
        assert await daemons[0].repos.journal.size() == 0 and await daemons[0].repos.rooms.size() == 0
    finally:
        await close_all(grids)


async def test_entities_of_a_lost_daemon_end_once_after_idle_when_nobody_comes_back() -> None:
    clock = Clock()
    grids, daemons = await _daemons(2, clock)
    try:
        for _, frame in fixture_frames(NAME):
            await daemons[1].feed(frame)
        expected = scenario(NAME)["expectedEntityEvents"]
        assert _opened(daemons[1].reports) == {name: expected[name] for name in OPENING}
        await _lose(grids, 1)
        survivor = daemons[:1]
        assert await _expire(survivor, clock, 6) == []  # found missing: the clients may come back
        assert await _expire(survivor, clock, 4) == []
        ended = await _expire(survivor, clock, 2)
        assert event_counts(ended) == Counter({CLOSING[name]: expected[name] for name in OPENING})
        assert daemons[0].expirer.metrics.lost_ended.labels("call")._value.get() == 1
        assert await _expire(survivor, clock, 10) == []
        for name, storage in daemons[0].repos.items():
            assert await storage.size() == 0, name
        # the room was released: the clients coming back start a new call
        again = await daemons[0].feed(fixture_frames(NAME)[0][1])
        assert event_counts(again)["CALL_STARTED"] == 1
    finally:
        await close_all(grids)


async def test_two_leaders_sweeping_at_once_end_every_lost_or_idle_entity_once() -> None:
    """An old leader still finishing its pass while the new one runs its first: the journal's
    replicated delete gives each entry to one of them."""
    clock = Clock()
    grids, daemons = await _daemons(3, clock)
    try:
        alice = scenario(NAME)["expected"]["rooms"][0]["clients"][0]["clientId"]
        for _, frame in fixture_frames(NAME):  # alice on daemon 0 (kept), the others on daemon 2 (lost)
            await daemons[0 if frame.client_samples[0]["clientId"] == alice else 2].feed(frame)
        await _lose(grids, 2)
        survivors = daemons[:2]
        both_decided = asyncio.Barrier(2)
        asked: list[set] = []
        for d in survivors:
            d.expirer._is_leader = lambda: True  # type: ignore[misc]
            delete = d.repos.journal.delete_all

            async def after_both_decided(keys, delete=delete):  # both passes read before either deletes
                asked.append(set(keys))
                await both_decided.wait()
                return await delete(keys)

            d.repos.journal.delete_all = after_both_decided  # type: ignore[method-assign]
        assert await _expire(survivors, clock, 1) == []
        ended = await _expire(survivors, clock, 6)
        expected = scenario(NAME)["expectedEntityEvents"]
        assert event_counts(ended) == Counter({CLOSING[name]: expected[name] for name in OPENING})
        assert len(asked) == 2 and len(asked[0] & asked[1]) == sum(expected[name] for name in OPENING)
        left = [p["clientId"] for p in events(ended, "CLIENT_LEFT")]
        assert sorted(left) == sorted(set(left)) and alice in left
        assert await _expire(survivors, clock, 10) == []
    finally:
        await close_all(grids)
