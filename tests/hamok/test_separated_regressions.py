"""One regression test per reference bug or weakness fixed in the separated storage and its
backups (spec/hamok.md §7), named after the bug."""

from __future__ import annotations

import asyncio
import time

import pytest

from hamok.config import ConfigError, GridConfig
from hamok.messages import Message, MessageType
from hamok.storages.batching import chunks
from hamok.storages.events import EventKind
from hamok.transport.memory import Faults

from .test_separated_harness import Cluster, eventually

pytestmark = pytest.mark.timeout(30)


async def test_bug_requests_to_peers_lacking_the_storage_wait_for_a_timeout() -> None:
    async with Cluster(1, config={"request_timeout_ms": 5000}) as cluster:
        bare = cluster.add_node(1, with_storage=False)  # a peer without the "calls" storage
        await bare.start()
        await eventually(lambda: cluster.nodes[0].grid.remote_peers == {"n1"}, what="peer up")
        store = cluster.stores[0]
        started = time.monotonic()
        assert await store.get("missing") is None
        assert await store.set_all({"k": 1}) == {}
        assert await store.insert_all({"k": 2, "j": 3}) == {"k": 1}
        assert await store.delete_all(["x"]) == set()
        assert await store.size() == 2
        assert await store.keys() == {"k", "j"}
        assert await store.check_collisions() == []
        assert time.monotonic() - started < 1.0
        await bare.close()


async def test_bug_collisions_resolved_by_node_id_bits_not_by_recency() -> None:
    async with Cluster(2, check_collisions_on_join=False) as cluster:
        a, b = cluster.stores
        cluster.net.partition({"n0"}, {"n1"})
        await eventually(lambda: not cluster.nodes[0].grid.remote_peers, what="partition")
        await b.set("k", "older, on the larger id")
        await asyncio.sleep(0.005)
        await a.set("k", "newer, on the smaller id")
        cluster.net.heal()
        await cluster.connected()
        collisions = await b.check_collisions()
        assert [c.winner for c in collisions] == ["n0"]
        assert cluster.owners("k") == ["n0"]
        assert await b.get("k") == "newer, on the smaller id"


async def test_bug_restored_entries_are_not_backed_up_again() -> None:
    async with Cluster(3, backups=True) as cluster:
        await cluster.stores[1].set_all({f"k{i}": i for i in range(40)})
        await cluster.flush_backups()
        await cluster.nodes[1].grid.endpoint.stop()
        survivors = [cluster.nodes[0], cluster.nodes[2]]
        await eventually(lambda: sum(n.store.local_size() for n in survivors) == 40, what="restore")
        restorers = [n for n in survivors if n.kinds(EventKind.RESTORED)]
        for node in survivors:
            await node.backups.flush()  # type: ignore[union-attr]
        for node in restorers:
            for event in node.kinds(EventKind.RESTORED):
                assert node.backups.saved_holders("calls", event.key), "restored entry mirrored again"  # type: ignore[union-attr]
        # lose the restorer(s) one by one: nothing is lost
        await restorers[0].grid.endpoint.stop()
        last = next(n for n in survivors if n is not restorers[0])
        await eventually(lambda: last.store.local_size() == 40, what="second restore")


async def test_bug_clear_evicts_the_wrong_key_set_from_the_backups() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        assert a.backups is not None and b.backups is not None
        clients_a = a.grid.separated_storage("clients", backups=a.backups)
        await a.store.set_all({"call-1": 1, "call-2": 2})
        await clients_a.set_all({"client-1": 1})
        await b.store.set_all({"call-b": 3})
        await a.backups.flush()
        await b.backups.flush()
        assert (a.backups.stats().saved_entries, b.backups.stats().stored_entries) == (3, 3)
        await a.store.clear()  # exactly the calls mirrors of a go; clients and b's mirrors stay
        await a.backups.flush()
        assert b.backups.stats().stored_entries == 1
        assert a.backups.saved_holders("clients", "client-1") == ("n1",)
        assert a.backups.stats().stored_entries == 1  # b's "call-b" mirror
        assert clients_a.local_snapshot() == {"client-1": 1}
        assert b.store.local_snapshot() == {"call-b": 3}
        await clients_a.close()


async def test_bug_remove_request_is_served_by_the_delete_handler() -> None:
    async with Cluster(2) as cluster:
        a, _ = cluster.stores
        await a.set_all({"x": 1, "y": 2, "z": 3})
        encode = a.key_codec.encode
        responses = await cluster.nodes[1].grid.request(Message(
            MessageType.REMOVE_ENTRIES_REQUEST, storage_id="calls", keys=[encode("x"), encode("y"), encode("w")]))
        assert len(responses) == 1 and responses[0].type == MessageType.REMOVE_ENTRIES_RESPONSE
        removed = dict(zip(map(a.key_codec.decode, responses[0].keys),
                           map(a.value_codec.decode, responses[0].values), strict=True))
        assert removed == {"x": 1, "y": 2}
        assert a.local_snapshot() == {"z": 3}
        assert {e.key for e in cluster.nodes[0].kinds(EventKind.DELETED)} == {"x", "y"}


async def test_bug_pending_request_completes_before_every_peer_answered() -> None:
    async with Cluster(3) as cluster:
        cluster.net.set_link_faults("n2", "n0", Faults(delay=0.15))  # n2's answers arrive late
        await cluster.stores[1].set("on-n1", 1)
        await cluster.stores[2].set("on-n2", 2)
        assert await cluster.stores[0].get_all(["on-n1", "on-n2"]) == {"on-n1": 1, "on-n2": 2}
        assert await cluster.stores[0].keys() == {"on-n1", "on-n2"}
        assert await cluster.stores[0].size() == 2


async def test_bug_zero_max_keys_loops_forever() -> None:
    assert chunks([1, 2, 3], 0) == [[1, 2, 3]]
    assert chunks([1, 2, 3], -1) == [[1, 2, 3]]
    assert chunks([], 0) == []
    assert chunks([1, 2, 3], 2) == [[1, 2], [3]]
    with pytest.raises(ConfigError):
        GridConfig(local_id="x", max_message_keys=0)
    async with Cluster(2) as cluster:
        with pytest.raises(ValueError, match="iterator_batch_size"):
            cluster.nodes[0].grid.separated_storage("other", iterator_batch_size=0)
        await cluster.stores[1].set_all({f"k{i}": i for i in range(5)})
        assert len([kv async for kv in cluster.stores[0].items(batch_size=0)]) == 5


async def test_bug_batched_iterator_mixes_global_size_with_a_key_snapshot() -> None:
    async with Cluster(2) as cluster:
        a, b = cluster.stores
        await a.set_all({f"a{i}": i for i in range(50)})
        await b.set_all({f"b{i}": i for i in range(50)})
        seen: dict[str, int] = {}
        deleted: set[str] = set()
        async for key, value in a.items(batch_size=10):
            assert value is not None
            seen[key] = value
            if len(seen) == 5:
                # the grid shrinks and grows under the iterator
                deleted = {f"a{i}" for i in range(25, 50)} | {f"b{i}" for i in range(25, 50)}
                await a.delete_all(deleted)
                await b.set_all({f"new{i}": i for i in range(30)})
        snapshot = {f"a{i}" for i in range(50)} | {f"b{i}" for i in range(50)}
        assert set(seen) <= snapshot
        assert snapshot - deleted <= set(seen)
        assert len(seen) < 100
