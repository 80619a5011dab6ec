"""In-memory clusters of grids with separated storages (and optional backups) for the
separated-storage and backups tests. Holds no tests itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from hamok.config import GridConfig
from hamok.grid import StorageGrid
from hamok.storages.backups import Backups
from hamok.storages.events import EventKind, StorageEvent
from hamok.storages.separated import Collision, SeparatedStorage
from hamok.transport.memory import Faults, InMemoryNetwork


async def eventually(predicate: Callable[[], Any], within: float = 3.0, what: str = "condition") -> None:
    """Poll ``predicate`` (sync or async) until it is truthy, or fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.01)


class Node:
    def __init__(self, grid: StorageGrid, store: SeparatedStorage[Any, Any], backups: Backups | None,
                 registry: CollectorRegistry) -> None:
        self.grid = grid
        self.store = store
        self.backups = backups
        self.registry = registry
        self.events: list[StorageEvent[Any, Any]] = []
        self.collisions: list[Collision] = []
        store.events.subscribe(self.events.append)
        store.on_collision(self.collisions.append)

    @property
    def id(self) -> str:
        return self.grid.local_id

    def kinds(self, kind: EventKind) -> list[StorageEvent[Any, Any]]:
        return [e for e in self.events if e.kind == kind]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


class Cluster:
    """``async with Cluster(3) as c: c.nodes[0].store ...`` — grids n0..n{size-1}, connected."""

    def __init__(self, size: int, *, seed: int = 1, storage_id: str = "calls", backups: bool = False,
                 backup_kwargs: dict[str, Any] | None = None, faults: Faults | None = None,
                 config: dict[str, Any] | None = None, **storage_kwargs: Any) -> None:
        self.size = size
        self.net = InMemoryNetwork(seed=seed, faults=faults)
        self.storage_id = storage_id
        self.with_backups = backups
        self.backup_kwargs = {"flush_ms": 10, **(backup_kwargs or {})}
        self.config = config or {}
        self.storage_kwargs = storage_kwargs
        self.nodes: list[Node] = []

    def add_node(self, index: int, *, with_storage: bool = True) -> StorageGrid:
        grid = StorageGrid(self.net.endpoint(f"n{index}"), GridConfig(local_id=f"n{index}", **self.config))
        if with_storage:
            registry = CollectorRegistry()
            backups = Backups(grid, registry=registry, **self.backup_kwargs) if self.with_backups else None
            store = grid.separated_storage(self.storage_id, backups=backups, registry=registry,
                                           **self.storage_kwargs)
            self.nodes.append(Node(grid, store, backups, registry))
        return grid

    async def __aenter__(self) -> Cluster:
        for index in range(self.size):
            self.add_node(index)
        for node in self.nodes:
            await node.grid.start()
        await self.connected()
        return self

    async def connected(self, nodes: list[Node] | None = None) -> None:
        group = nodes if nodes is not None else self.nodes
        await eventually(lambda: all(len(n.grid.remote_peers) == len(group) - 1 for n in group),
                         what="peers connected")

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes:
            await node.store.close()
            if node.backups is not None:
                await node.backups.close()
        for node in self.nodes:
            await node.grid.close()

    @property
    def stores(self) -> list[SeparatedStorage[Any, Any]]:
        return [n.store for n in self.nodes]

    async def flush_backups(self) -> None:
        for node in self.nodes:
            if node.backups is not None and node.grid.endpoint.connected_peers is not None:
                await node.backups.flush()

    def owners(self, key: Any) -> list[str]:
        return [n.id for n in self.nodes if key in n.store.local_keys()]
