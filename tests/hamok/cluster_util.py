"""Helpers for multi-node in-memory grid tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hamok.config import GridConfig
from hamok.grid import StorageGrid
from hamok.transport.memory import InMemoryNetwork


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


def formed(grids: list[StorageGrid]) -> bool:
    """One cluster: same cluster id, all members, one leader known by all, nobody joining."""
    ids = {g.cluster_id for g in grids}
    leaders = {g.leader_id for g in grids}
    members = {g.members for g in grids}
    return (len(ids) == 1 and None not in ids and len(leaders) == 1 and None not in leaders
            and members == {frozenset(g.local_id for g in grids)} and not any(g.joining for g in grids))


async def start_cluster(n: int, net: InMemoryNetwork | None = None, **config: Any) -> list[StorageGrid]:
    net = net or InMemoryNetwork(seed=7)
    grids = [StorageGrid(net.endpoint(f"n{i}"), GridConfig(local_id=f"n{i}", **config)) for i in range(n)]
    for g in grids:
        await g.start()
    return grids


async def close_all(grids: list[StorageGrid]) -> None:
    for g in grids:
        await g.close()
