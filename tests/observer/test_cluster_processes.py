"""Several observer daemons act as one (real processes, real websockets, static discovery with a
shared secret): the clients of one room send to different daemons, daemons are SIGKILLed mid-call,
and the reports collected from every daemon's FileSink still show one call per room, every
entity event exactly once, cross-daemon matches, and end events exactly once after idle."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.observer.replay import MANIFEST_DATA, event_counts, frame_bytes, rest_path, scenario_files
from tests.observer.test_e2e_fixtures import END_OF, check_scenario

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from observer_cluster import ObserverCluster

pytestmark = pytest.mark.processes
SCENARIOS = sorted(MANIFEST_DATA["scenarios"])
CALL_SIDE = ("CALL_STARTED", "CLIENT_JOINED", "PEER_CONNECTION_OPENED", "MEDIA_TRACK_ADDED")
SFU_SIDE = ("SFU_JOINED", "SFU_TRANSPORT_OPENED", "SFU_RTP_PAD_ADDED", "SFU_SCTP_STREAM_ADDED")


def _clients(scenario: str) -> list[str]:
    return [c["clientId"] for room in MANIFEST_DATA["scenarios"][scenario]["expected"]["rooms"]
            for c in room["clients"]]


async def _paced(entries: list[dict[str, Any]]):
    """Yield the frames at their recorded offsets (monitors send every few hundred ms; matching
    across daemons needs the remote side's earlier samples to be stored first, as in real calls)."""
    start = time.monotonic()
    first = entries[0]["offsetMs"] if entries else 0
    for entry in entries:
        delay = (entry["offsetMs"] - first) / 1000 - (time.monotonic() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        yield entry


async def _send(session: aiohttp.ClientSession, base: str, entry: dict[str, Any]) -> None:
    async with session.post(base + rest_path(entry["pathQuery"]), data=frame_bytes(entry),
                            headers={"Content-Type": "application/octet-stream"}) as resp:
        assert resp.status == 200, await resp.text()


def _route(cluster: ObserverCluster, scenario: str, entry: dict[str, Any], shift: int = 0) -> str:
    """Client i of a room goes to daemon i; SFU frames to the last daemon; ``shift`` moves everyone."""
    alive = cluster.alive()
    ids = entry["contains"].get("clientIds") or []
    index = _clients(scenario).index(ids[0]) if ids else len(cluster.daemons) - 1
    return alive[(index + shift) % len(alive)].base_url


async def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_clients_of_one_room_on_three_daemons_act_as_one_observer() -> None:
    with ObserverCluster(3) as cluster:
        async with aiohttp.ClientSession() as session:
            await cluster.wait_ready(session)
            async def play(scenario: str) -> None:
                async for entry in _paced(scenario_files(scenario)):
                    await _send(session, _route(cluster, scenario, entry), entry)

            await asyncio.gather(*(play(s) for s in SCENARIOS))
            await _wait(lambda: event_counts(cluster.reports())["CLIENT_JOINED"] == 12)
            await asyncio.sleep(1.5)
            reports = cluster.reports()
            for scenario in SCENARIOS:
                check_scenario(scenario, reports, ended=False)
            await _wait(lambda: event_counts(cluster.reports())["CALL_ENDED"] >= len(SCENARIOS), timeout=40)
            await asyncio.sleep(2.5)   # a duplicate end event from another daemon would land now
            reports = cluster.reports()
            for scenario in SCENARIOS:
                check_scenario(scenario, reports, ended=True)


@pytest.mark.parametrize("backups", [True, False], ids=["backups", "no-backups"])
async def test_daemons_killed_mid_call_events_stay_exactly_once(backups: bool) -> None:
    """Half of each call's frames go in, then the leader is SIGKILLed and its clients continue on the
    survivors; then a follower is killed too. Every room keeps one callId; no CALL_STARTED,
    CLIENT_JOINED, PEER_CONNECTION_OPENED or MEDIA_TRACK_ADDED twice; and every started call, joined
    client, opened PC and added track ends exactly once after idle.

    Without backups the calls, clients, PCs and tracks of a killed daemon come back from the
    lifecycle journal (docs/cluster.md, "Without backups"). Its SFU entities do not (not recovered
    without backups, as documented): an SFU whose daemon died is seen anew on a survivor, so SFU
    events are only counted here with backups."""
    with ObserverCluster(3, backups=backups, idle_s=4) as cluster:
        async with aiohttp.ClientSession() as session:
            await cluster.wait_ready(session)
            plan = {s: scenario_files(s) for s in SCENARIOS}
            async def play(scenario: str, entries: list[dict[str, Any]], shift: int) -> None:
                async for entry in _paced(entries):
                    await _send(session, _route(cluster, scenario, entry, shift), entry)

            await asyncio.gather(*(play(s, e[: len(e) // 2], 0) for s, e in plan.items()))
            await _wait(lambda: event_counts(cluster.reports())["CALL_STARTED"] == len(SCENARIOS))
            await asyncio.sleep(1.2)               # FileSinks flush at least once a second
            leader = await cluster.leader(session)
            leader.kill()
            await cluster.wait_ready(session, timeout=60)
            await asyncio.gather(*(play(s, e[len(e) // 2:], 1) for s, e in plan.items()))
            await asyncio.sleep(1.2)
            current = await cluster.leader(session)
            follower = next(d for d in cluster.alive() if d is not current)
            follower.kill()
            await cluster.wait_ready(session, timeout=60)

            def ended() -> bool:
                counts = event_counts(cluster.reports())
                return all(counts[END_OF[name]] >= counts[name] for name in CALL_SIDE)

            await _wait(ended, timeout=60)
            await asyncio.sleep(3)
            reports = cluster.reports()
            counts = event_counts(reports)
            for name in CALL_SIDE:
                expected = sum(MANIFEST_DATA["scenarios"][s]["expectedEntityEvents"][name] for s in SCENARIOS)
                assert counts[name] == expected, (name, counts)
                assert counts[END_OF[name]] == expected, (END_OF[name], counts)
            rooms: dict[str, set[str]] = {}
            for report in reports:
                payload = report["payload"]
                if payload.get("roomId") and payload.get("callId"):
                    rooms.setdefault(payload["roomId"], set()).add(payload["callId"])
            assert len(rooms) == len(SCENARIOS) and all(len(ids) == 1 for ids in rooms.values()), rooms
            if backups:
                for name in SFU_SIDE:
                    expected = sum(MANIFEST_DATA["scenarios"][s]["expectedEntityEvents"].get(name, 0)
                                   for s in SCENARIOS)
                    assert counts[name] == expected, (name, counts)
                    assert counts[END_OF[name]] == expected, (END_OF[name], counts)
