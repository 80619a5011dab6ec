"""hamok's Prometheus figures are real counts (the reference never counted bytes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hamok import GridConfig, InMemoryNetwork, StorageGrid

from .cluster_util import close_all, formed, wait_until


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_messages_and_bytes_sent_equal_those_received_and_sizes_are_reported() -> None:
    net = InMemoryNetwork(seed=1)
    registries = [CollectorRegistry() for _ in range(2)]
    grids = [StorageGrid(net.endpoint(f"n{i}"), GridConfig(local_id=f"n{i}"), registry=registries[i])
             for i in range(2)]
    stores = [g.replicated_storage("rooms") for g in grids]
    calls = [g.separated_storage("calls") for g in grids]
    for g in grids:
        await g.start()
    try:
        await wait_until(lambda: formed(grids))
        await stores[0].set_all({f"k{i}": "v" * 100 for i in range(50)})
        await calls[1].set("c", 1)
        for s in stores:
            await s.sync()
        await wait_until(lambda: net.frames_delivered > 0)
        sent = sum(_value(r, "hamok_bytes_sent_total") for r in registries)
        received = sum(_value(r, "hamok_bytes_received_total") for r in registries)
        assert sent > 50 * 100                       # the values crossed the wire at least once
        await wait_until(lambda: sum(_value(r, "hamok_bytes_received_total") for r in registries) == sum(
            _value(r, "hamok_bytes_sent_total") for r in registries), timeout=5)
        assert received <= sent
        messages_sent = sum(_value(r, "hamok_messages_sent_total") for r in registries)
        messages_received = sum(_value(r, "hamok_messages_received_total") for r in registries)
        assert messages_sent >= messages_received > 0
        assert _value(registries[1], "hamok_storage_local_entries", storage="rooms") == 50
        assert _value(registries[1], "hamok_storage_local_entries", storage="calls") == 1
        assert _value(registries[0], "hamok_storage_local_entries", storage="calls") == 0
        assert sum(_value(r, "hamok_is_leader") for r in registries) == 1
        assert _value(registries[0], "hamok_raft_members") == 2
        assert _value(registries[0], "hamok_raft_commit_index") >= 2
    finally:
        await close_all(grids)
