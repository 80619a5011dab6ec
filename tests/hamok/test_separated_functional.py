"""Cross-node behaviour (reference SeparatedStorageFunctionalTest and
SeparatedStorageDistributedSpecificationTest): ownership, local views against global views."""

from __future__ import annotations

import time

import pytest

from hamok.codec import STR
from hamok.messages import Message, MessageType

from .test_separated_harness import Cluster, eventually

pytestmark = pytest.mark.timeout(30)


async def test_set_on_a_is_readable_on_b_while_only_a_stores_it() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        await a.set("k", "v")
        assert await b.get("k") == "v"
        assert (a.local_size(), b.local_size()) == (1, 0)


async def test_delete_from_b_removes_the_copy_on_a() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        await a.set("k", "v")
        assert await b.delete("k")
        assert a.local_size() == 0
        assert await a.get("k") is None


async def test_set_delete_set_gives_ownership_to_the_writer() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        await a.set("k", 1)
        await b.delete("k")
        assert await b.set("k", 2) is None
        assert cluster.owners("k") == ["n1"]
        assert await a.set("k", 3) == 2
        assert cluster.owners("k") == ["n1"]
        assert await a.get("k") == 3


async def test_get_all_spans_both_nodes() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        await a.set_all({"a1": 1, "a2": 2})
        await b.set_all({"b1": 3})
        expected = {"a1": 1, "a2": 2, "b1": 3}
        assert await a.get_all(["a1", "a2", "b1", "x"]) == expected
        assert await b.get_all(["a1", "a2", "b1", "x"]) == expected


async def test_keys_equal_on_every_node() -> None:
    async with Cluster(3) as cluster:
        for i, store in enumerate(cluster.stores):
            await store.set_all({f"{i}-{j}": j for j in range(5)})
        keys = [await s.keys() for s in cluster.stores]
        assert keys[0] == keys[1] == keys[2]
        assert len(keys[0]) == 15


async def test_local_views_against_global_views() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        assert a.local_is_empty() and await a.is_empty()
        await b.set_all({"x": 1, "y": 2})
        assert a.local_is_empty()
        assert not await a.is_empty()
        assert (a.local_size(), await a.size()) == (0, 2)
        assert a.local_keys() == set() and b.local_keys() == {"x", "y"}
        assert a.local_get_all(["x"]) == {} and b.local_get_all(["x"]) == {"x": 1}
        assert dict([kv async for kv in a.items()]) == b.local_snapshot()
        a.local_clear()
        assert await a.size() == 2
        b.local_clear()
        assert await a.is_empty()


async def test_custom_codecs_cross_the_wire() -> None:
    async with Cluster(2, key_codec=STR, value_codec=STR) as cluster:
        a, b = cluster.stores
        await a.set_all({"k1": "v1", "k2": "v2"})
        assert await b.get_all(["k1", "k2"]) == {"k1": "v1", "k2": "v2"}


async def test_undecodable_entries_from_a_peer_are_dropped_and_counted() -> None:
    async with Cluster(2, key_codec=STR, value_codec=STR) as cluster:
        a, _ = cluster.stores
        grid_b = cluster.nodes[1].grid
        # a hostile/buggy peer answers an update notification with invalid utf-8 keys
        await a.set("good", "1")
        grid_b.notify(Message(MessageType.UPDATE_ENTRIES_NOTIFICATION, storage_id="calls",
                              keys=[b"\xff\xfe", b"good"], values=[b"x", b"2"]), "n0")
        await eventually(lambda: a.local_snapshot() == {"good": "2"}, within=1.0, what="valid entry applied")
        assert cluster.nodes[0].metric("hamok_separated_dropped_entries_total", storage="calls") == 1


async def test_delete_notification_from_a_peer_deletes_locally() -> None:
    async with Cluster(2) as cluster:
        a, _ = cluster.stores
        await a.set_all({"x": 1, "y": 2})
        cluster.nodes[1].grid.notify(Message(MessageType.DELETE_ENTRIES_NOTIFICATION, storage_id="calls",
                                             keys=[a.key_codec.encode("x")]), "n0")
        await eventually(lambda: a.local_keys() == {"y"}, within=1.0, what="delete applied")


async def test_unserved_request_types_are_answered_at_once() -> None:
    async with Cluster(2, config={"request_timeout_ms": 5000}) as cluster:
        grid_b = cluster.nodes[1].grid
        started = time.monotonic()
        responses = await grid_b.request(Message(MessageType.CLEAR_ENTRIES_REQUEST, storage_id="calls"))
        assert time.monotonic() - started < 1.0
        assert [r.type for r in responses] == [MessageType.CLEAR_ENTRIES_RESPONSE]
        assert await cluster.stores[0].size() == 0


async def test_local_metrics_gauge_follows_local_entries() -> None:
    async with Cluster(1) as cluster:
        node = cluster.nodes[0]
        await node.store.set_all({"a": 1, "b": 2})
        assert node.metric("hamok_separated_local_entries", storage="calls") == 2


async def test_storages_and_backups_share_one_registry() -> None:
    from prometheus_client import CollectorRegistry

    from hamok.storages.backups import Backups

    async with Cluster(2) as cluster:
        registry = CollectorRegistry()
        grid = cluster.nodes[0].grid
        backups = Backups(grid, "shared-backups", registry=registry)
        first = grid.separated_storage("first", backups=backups, registry=registry)
        second = grid.separated_storage("second", backups=backups, registry=registry)
        await first.set_all({"a": 1, "b": 2})
        await second.set("c", 3)
        sample = registry.get_sample_value
        assert sample("hamok_separated_local_entries", {"storage": "first"}) == 2
        assert sample("hamok_separated_local_entries", {"storage": "second"}) == 1
        await first.close()
        assert sample("hamok_separated_local_entries", {"storage": "first"}) is None
        await second.close()
        await backups.close()
