"""The same key owned by two nodes (reference SeparatedStorageCheckCollidingEntriesTest and
SeparatedStorageSyncTest): detection, resolution by recency, events and metrics."""

from __future__ import annotations

import asyncio

import pytest

from hamok.messages import Message, MessageType
from hamok.storages.events import EventKind
from hamok.storages.separated import pack_stamp

from .test_separated_harness import Cluster, eventually

pytestmark = pytest.mark.timeout(30)


async def write_on_both_sides(cluster: Cluster, first: int, second: int, key: str = "k") -> None:
    """Partition ``first`` from ``second``, write ``key`` on ``first`` then (later) on ``second``."""
    ids = [n.id for n in cluster.nodes]
    cluster.net.partition({ids[first]}, set(ids) - {ids[first]})
    await eventually(lambda: not cluster.nodes[first].grid.remote_peers, what="partition")
    await cluster.stores[first].set(key, f"from-{ids[first]}")
    await asyncio.sleep(0.005)
    await cluster.stores[second].set(key, f"from-{ids[second]}")
    assert sorted(cluster.owners(key)) == sorted([ids[first], ids[second]])


async def test_check_collisions_leaves_one_copy_the_newest() -> None:
    async with Cluster(2, check_collisions_on_join=False) as cluster:
        await write_on_both_sides(cluster, first=0, second=1)
        cluster.net.heal()
        await cluster.connected()
        collisions = await cluster.stores[0].check_collisions()
        assert [(c.key, c.holders, c.winner) for c in collisions] == [("k", ("n0", "n1"), "n1")]
        assert cluster.owners("k") == ["n1"]
        assert await cluster.stores[0].get("k") == "from-n1"
        assert [e.key for e in cluster.nodes[0].kinds(EventKind.EVICTED)] == ["k"]
        assert cluster.nodes[0].collisions == collisions
        assert cluster.nodes[0].metric("hamok_separated_collisions_total", storage="calls") == 1
        assert cluster.nodes[0].metric("hamok_separated_collision_evictions_total", storage="calls") == 1
        # nothing left to resolve, from either side
        assert await cluster.stores[0].check_collisions() == []
        assert await cluster.stores[1].check_collisions() == []


async def test_rejoin_resolves_collisions_by_itself() -> None:
    async with Cluster(3) as cluster:
        await write_on_both_sides(cluster, first=2, second=0)
        await cluster.stores[2].set_all({f"only-n2-{i}": i for i in range(50)})
        cluster.net.heal()
        await cluster.connected()
        await eventually(lambda: cluster.owners("k") == ["n0"], what="one copy left")
        assert await cluster.stores[2].get("k") == "from-n0"
        assert await cluster.stores[1].size() == 51


async def test_get_all_answers_the_newest_copy_and_evicts_the_older() -> None:
    async with Cluster(3, check_collisions_on_join=False) as cluster:
        # n1 and n2 both own "k" (n2 wrote last); n0 reads it
        await write_on_both_sides(cluster, first=1, second=2)
        cluster.net.heal()
        await cluster.connected()
        assert await cluster.stores[0].get_all(["k"]) == {"k": "from-n2"}
        assert cluster.owners("k") == ["n2"]
        assert [(c.holders, c.winner) for c in cluster.nodes[0].collisions] == [(("n1", "n2"), "n2")]


async def test_set_on_a_colliding_key_updates_it_and_resolves_in_the_background() -> None:
    async with Cluster(3, check_collisions_on_join=False) as cluster:
        await write_on_both_sides(cluster, first=1, second=2)
        cluster.net.heal()
        await cluster.connected()
        await cluster.stores[0].set("k", "from-n0")
        await eventually(lambda: len(cluster.owners("k")) == 1, what="collision resolved")
        assert await cluster.stores[0].get("k") == "from-n0"
        assert cluster.stores[0].local_size() == 0


async def test_equal_write_stamps_go_to_the_larger_node_id() -> None:
    async with Cluster(2, check_collisions_on_join=False) as cluster:
        a, b = cluster.stores
        a.restore_from_backup({"k": ("a", 1_000)})
        b.restore_from_backup({"k": ("b", 1_000)})
        collisions = await a.check_collisions()
        assert [c.winner for c in collisions] == ["n1"]
        assert cluster.owners("k") == ["n1"]


async def test_a_copy_written_after_the_comparison_is_not_evicted() -> None:
    async with Cluster(2) as cluster:
        a, _ = cluster.stores
        await a.set("k", "v")
        stale = a.write_stamp("k") - 1
        encode = a.key_codec.encode
        grid_b = cluster.nodes[1].grid
        responses = await grid_b.request(Message(MessageType.EVICT_ENTRIES_REQUEST, storage_id="calls",
                                                 keys=[encode("k")], values=[pack_stamp(stale)]))
        assert [r.keys for r in responses] == [[]]
        assert a.local_keys() == {"k"}
        responses = await grid_b.request(Message(MessageType.EVICT_ENTRIES_REQUEST, storage_id="calls",
                                                 keys=[encode("k")], values=[pack_stamp(stale + 1)]))
        assert [r.keys for r in responses] == [[encode("k")]]
        assert a.local_keys() == set()


async def test_many_colliding_keys_resolved_in_batches() -> None:
    async with Cluster(2, check_collisions_on_join=False, config={"max_message_keys": 10}) as cluster:
        a, b = cluster.stores
        cluster.net.partition({"n0"}, {"n1"})
        await eventually(lambda: not cluster.nodes[0].grid.remote_peers, what="partition")
        await a.set_all({f"k{i}": "a" for i in range(250)})
        await asyncio.sleep(0.005)
        await b.set_all({f"k{i}": "b" for i in range(0, 250, 2)})
        cluster.net.heal()
        await cluster.connected()
        collisions = await a.check_collisions()
        assert len(collisions) == 125 and {c.winner for c in collisions} == {"n1"}
        assert a.local_size() == 125 and b.local_size() == 125
        assert set(a.local_keys()).isdisjoint(b.local_keys())
        assert set((await a.get_all([f"k{i}" for i in range(250)])).values()) == {"a", "b"}
