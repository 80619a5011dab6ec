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
from tests.observer.test_e2e_fixtures import check_scenario

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from observer_cluster import ObserverCluster  # noqa: E402

pytestmark = pytest.mark.processes
SCENARIOS = sorted(MANIFEST_DATA["scenarios"])


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
    survivors; then a follower is killed too. No CALL_STARTED or CLIENT_JOINED twice, and every
    started call and joined client ends exactly once after idle."""
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
            follower = next(d for d in cluster.alive() if d is not await cluster.leader(session))
            follower.kill()
            await cluster.wait_ready(session, timeout=60)

            def ended() -> bool:
                counts = event_counts(cluster.reports())
                return counts["CALL_ENDED"] >= counts["CALL_STARTED"] and counts["CLIENT_LEFT"] >= counts[
                    "CLIENT_JOINED"]

            await _wait(ended, timeout=60)
            await asyncio.sleep(3)
            counts = event_counts(cluster.reports())
            assert counts["CALL_STARTED"] == len(SCENARIOS), counts
            assert counts["CLIENT_JOINED"] == 12, counts
            assert counts["CALL_ENDED"] == counts["CALL_STARTED"], counts
            assert counts["CLIENT_LEFT"] == counts["CLIENT_JOINED"], counts
