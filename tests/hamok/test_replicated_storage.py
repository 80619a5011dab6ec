"""ReplicatedStorage: the storage contract on one node (spec/hamok.md §8
ReplicatedStorageSpecificationTest) and the replicated behaviours on several nodes
(ReplicatedStorageFunctionalTest, DumpingTest, SyncTest), over the in-memory network."""

from __future__ import annotations

import asyncio

import pytest

from hamok.errors import HamokTimeoutError, NoLeaderError, UnsupportedOperationError
from hamok.storages.events import EventKind
from hamok.transport.memory import Faults, InMemoryNetwork

from .cluster_util import close_all, formed, start_cluster, wait_until


@pytest.fixture
async def single():
    grids = await start_cluster(1)
    storage = grids[0].replicated_storage("rs")
    yield storage
    await close_all(grids)


async def test_single_node_is_its_own_leader_at_once(single) -> None:
    await wait_until(lambda: single.grid.is_leader, timeout=1.0)
    assert await single.set("one", 1) is None


async def test_contract_set_get_size_keys(single) -> None:
    events = []
    single.events.subscribe(events.append)
    assert await single.is_empty()
    assert await single.set("one", 1) is None
    assert await single.set("one", 2) == 1
    assert await single.set_all({"two": 2, "three": 3}) == {}
    assert await single.get("one") == 2
    assert await single.get_all(["one", "two", "missing"]) == {"one": 2, "two": 2}
    assert await single.size() == 3
    assert await single.keys() == {"one", "two", "three"}
    assert [e.kind for e in events] == [EventKind.CREATED, EventKind.UPDATED, EventKind.CREATED,
                                        EventKind.CREATED]
    assert sorted([(k, v) async for k, v in single]) == [("one", 2), ("three", 3), ("two", 2)]


async def test_contract_insert_returns_existing_and_does_not_overwrite(single) -> None:
    assert await single.insert("one", 1) is None
    assert await single.insert("one", 2) == 1
    assert await single.insert_all({"one": 2, "two": 2}) == {"one": 1}
    assert await single.get_all(["one", "two"]) == {"one": 1, "two": 2}


async def test_contract_delete_and_clear(single) -> None:
    events = []
    single.events.subscribe(events.append)
    await single.set_all({"a": 1, "b": 2, "c": 3})
    assert await single.delete("a") is True
    assert await single.delete("a") is False
    assert await single.delete_all(["b", "x"]) == {"b"}
    await single.clear()
    assert await single.is_empty()
    assert [e.kind for e in events].count(EventKind.DELETED) == 3


async def test_contract_evict_and_restore_are_unsupported(single) -> None:
    with pytest.raises(UnsupportedOperationError):
        await single.evict("a")
    with pytest.raises(UnsupportedOperationError):
        await single.restore("a", 1)


async def test_large_batches_are_split_into_several_log_entries() -> None:
    grids = await start_cluster(1, max_message_keys=10)
    storage = grids[0].replicated_storage("rs")
    await storage.set_all({f"k{i}": i for i in range(95)})
    assert await storage.size() == 95
    assert grids[0].machine.applied_commands >= 10
    await close_all(grids)


@pytest.fixture
async def trio():
    grids = await start_cluster(3)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids))
    yield grids, stores
    await close_all(grids)


async def test_three_nodes_form_one_cluster_and_replicate(trio) -> None:
    _, stores = trio
    await stores[1].set("k", "v")                       # written through a follower or the leader
    for s in stores:
        await s.sync()
        assert await s.get("k") == "v"
    await stores[2].delete("k")
    for s in stores:
        await s.sync()
    assert [await s.size() for s in stores] == [0, 0, 0]


async def test_insert_is_atomic_cluster_wide(trio) -> None:
    _, stores = trio
    results = await asyncio.gather(*(s.insert("room", f"call-{i}") for i, s in enumerate(stores)))
    winners = [r for r in results if r is None]
    assert len(winners) == 1
    winner_value = f"call-{results.index(None)}"
    assert all(r in (None, winner_value) for r in results)
    for s in stores:
        await s.sync()
        assert await s.get("room") == winner_value


async def test_events_fire_on_every_replica(trio) -> None:
    _, stores = trio
    seen = [[] for _ in stores]
    for s, bucket in zip(stores, seen, strict=True):
        s.events.subscribe(bucket.append)
    await stores[0].set_all({"a": 1, "b": 2})
    for s in stores:
        await s.sync()
    assert all(sorted(e.key for e in bucket if e.kind == EventKind.CREATED) == ["a", "b"] for bucket in seen)


async def test_ttl_expiry_is_decided_by_the_leader_and_replicated() -> None:
    grids = await start_cluster(3)
    stores = [g.replicated_storage("ttl", expiration_ms=200) for g in grids]
    await wait_until(lambda: formed(grids))
    expired = [[] for _ in stores]
    for s, bucket in zip(stores, expired, strict=True):
        s.events.subscribe(lambda e, b=bucket: b.append(e.key) if e.kind == EventKind.EXPIRED else None)
    await stores[1].set("short", 1)
    await wait_until(lambda: all(b == ["short"] for b in expired), timeout=5)
    assert [await s.size() for s in stores] == [0, 0, 0]
    await close_all(grids)


async def test_minority_cannot_commit_majority_can() -> None:
    net = InMemoryNetwork(seed=3)
    grids = await start_cluster(5, net, standalone_when_isolated=False, peer_max_idle_ms=60_000,
                                request_timeout_ms=800)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids))
    leader = next(g.local_id for g in grids if g.is_leader)
    majority = {leader} | {g.local_id for g in grids if g.local_id != leader}
    majority = set(sorted(majority, key=lambda x: x != leader)[:3])
    minority = {g.local_id for g in grids} - majority
    net.partition(majority, minority)
    by_id = {g.local_id: s for g, s in zip(grids, stores, strict=True)}
    await by_id[leader].set("in-majority", 1)
    lone = by_id[sorted(minority)[0]]
    with pytest.raises((NoLeaderError, HamokTimeoutError)):
        await lone.set("in-minority", 1)
    net.heal()
    await wait_until(lambda: all(g.leader_id is not None for g in grids), timeout=10)
    for s in stores:
        await s.sync(timeout_ms=5000)
        assert await s.get("in-majority") == 1
    await close_all(grids)


async def test_writes_continue_after_the_leader_is_lost() -> None:
    net = InMemoryNetwork(seed=5)
    grids = await start_cluster(3, net, peer_max_idle_ms=400)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids))
    await stores[0].set_all({f"k{i}": i for i in range(50)})
    leader = next(g for g in grids if g.is_leader)
    survivors = [s for g, s in zip(grids, stores, strict=True) if g is not leader]
    await leader.endpoint.stop()
    await survivors[0].set("after", 1)
    for s in survivors:
        await s.sync()
        assert await s.size() == 51
    await close_all(grids)


async def test_duplicated_and_reordered_messages_lose_no_acknowledged_write() -> None:
    net = InMemoryNetwork(seed=11, faults=Faults(duplicate=0.2, reorder=0.2, jitter=0.002))
    grids = await start_cluster(3, net)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids), timeout=15)
    acked = await asyncio.gather(*(stores[i % 3].set(f"k{i}", i) for i in range(300)), return_exceptions=True)
    ok = [i for i, r in enumerate(acked) if not isinstance(r, Exception)]
    assert len(ok) == 300
    for s in stores:
        await s.sync()
        assert await s.get_all([f"k{i}" for i in ok]) == {f"k{i}": i for i in ok}
    assert all(g.machine.applied_commands == grids[0].machine.applied_commands for g in grids)
    await close_all(grids)


async def test_node_that_ran_alone_joins_the_cluster_and_merges_its_entries() -> None:
    """DumpingTest: a lone node's entries survive joining; the cluster's value wins on conflicts."""
    net = InMemoryNetwork(seed=2)
    grids = await start_cluster(2, net)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids))
    await stores[0].set_all({"shared": "cluster", "c1": 1})
    from hamok.config import GridConfig
    from hamok.grid import StorageGrid

    loner = StorageGrid(net.endpoint("n9"), GridConfig(local_id="n9"))
    lone_store = loner.replicated_storage("rs")
    net.partition({"n0", "n1"}, {"n9"})
    await loner.start()
    await lone_store.set_all({"shared": "loner", "l1": 1})
    net.heal()
    everyone = [*grids, loner]
    await wait_until(lambda: formed(everyone), timeout=15)
    await wait_until(lambda: lone_store.local.local_size() == 3, timeout=10)
    for s in [*stores, lone_store]:
        await s.sync()
        assert await s.get_all(["shared", "c1", "l1"]) == {"shared": "cluster", "c1": 1, "l1": 1}
    await close_all(everyone)


async def test_two_groups_formed_apart_end_up_as_one_cluster() -> None:
    net = InMemoryNetwork(seed=4)
    net.partition({"n0", "n1"}, {"n2", "n3"})
    grids = await start_cluster(4, net)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids[:2]) and formed(grids[2:]))
    assert grids[0].cluster_id != grids[2].cluster_id
    await stores[0].set("left", 1)
    await stores[2].set("right", 2)
    net.heal()
    await wait_until(lambda: formed(grids), timeout=15)
    await wait_until(lambda: all(s.local.local_size() == 2 for s in stores), timeout=10)
    for s in stores:
        assert await s.get_all(["left", "right"]) == {"left": 1, "right": 2}
    await close_all(grids)


async def test_removed_member_that_comes_back_rejoins_and_catches_up() -> None:
    net = InMemoryNetwork(seed=6)
    grids = await start_cluster(3, net, peer_max_idle_ms=300, log_compaction_min_entries=50)
    stores = [g.replicated_storage("rs") for g in grids]
    await wait_until(lambda: formed(grids))
    follower = next(g for g in grids if not g.is_leader)
    others = [g for g in grids if g is not follower]
    net.partition({g.local_id for g in others}, {follower.local_id})
    await wait_until(lambda: all(follower.local_id not in g.members for g in others), timeout=5)
    writer = stores[grids.index(others[0])]
    await writer.set_all({f"k{i}": i for i in range(200)})   # enough to compact the log
    net.heal()
    await wait_until(lambda: formed(grids), timeout=15)
    idx = grids.index(follower)
    await wait_until(lambda: stores[idx].local.local_size() == 200, timeout=10)
    await close_all(grids)
