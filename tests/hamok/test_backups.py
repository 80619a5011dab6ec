"""Backups of separated storages (reference SeparatedStorageBackupTest and beyond): mirroring,
deletes, stats, restore exactly once on peer loss, re-backup of restored entries."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from hamok.messages import Message, MessageType
from hamok.storages.backups import Backups, rendezvous
from hamok.storages.events import EventKind

from .test_separated_harness import Cluster, Node, eventually

pytestmark = pytest.mark.timeout(30)


def restored_keys(nodes: list[Node]) -> Counter[Any]:
    return Counter(e.key for n in nodes for e in n.kinds(EventKind.RESTORED))


async def settled(cluster: Cluster, nodes: list[Node] | None = None) -> None:
    """Every live node mirrored all its entries and holds exactly the others' mirrors."""
    group = nodes if nodes is not None else cluster.nodes

    async def check() -> bool:
        for node in group:
            assert node.backups is not None
            await node.backups.flush()
        stats = [n.backups.stats() for n in group if n.backups is not None]
        locals_ = [n.store.local_size() for n in group]
        return (all(s.saved_entries == size for s, size in zip(stats, locals_, strict=True))
                and sum(s.stored_entries for s in stats) == sum(locals_))

    await eventually(check, what="backups settled")


async def test_set_is_mirrored_and_delete_removes_the_mirror() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        await a.store.set("k", "v")
        await a.backups.flush()  # type: ignore[union-attr]
        assert a.backups.stats().saved_entries == 1  # type: ignore[union-attr]
        assert b.backups.stats().stored_entries == 1  # type: ignore[union-attr]
        assert b.backups.stats().stored_bytes == len(a.store.value_codec.encode("v"))  # type: ignore[union-attr]
        await b.store.delete("k")  # deleted remotely: the owner drops its mirror
        await a.backups.flush()  # type: ignore[union-attr]
        stats = [n.backups.stats() for n in cluster.nodes]  # type: ignore[union-attr]
        assert [(s.saved_entries, s.stored_entries, s.stored_bytes) for s in stats] == [(0, 0, 0), (0, 0, 0)]


async def test_updates_are_coalesced_per_key() -> None:
    async with Cluster(2, backups=True, backup_kwargs={"flush_ms": 50}) as cluster:
        a, b = cluster.nodes
        for i in range(20):
            await a.store.set("k", i)
        await a.store.set("gone", 1)
        await a.store.delete("gone")
        assert a.backups.stats().pending == 2  # type: ignore[union-attr]
        received = b.grid.metrics.messages_received.labels("UPDATE_ENTRIES_REQUEST")._value.get()
        await a.backups.flush()  # type: ignore[union-attr]
        assert b.grid.metrics.messages_received.labels("UPDATE_ENTRIES_REQUEST")._value.get() == received + 1
        assert b.backups.stats().stored_entries == 1  # type: ignore[union-attr]
        # the mirror holds the latest value: it is what a survivor restores
        await a.grid.endpoint.stop()
        await eventually(lambda: b.store.local_snapshot() == {"k": 19}, what="restore of the latest value")


async def test_detached_owner_is_restored_and_backups_are_empty() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        await a.store.set("k", "v")
        await settled(cluster)
        await a.grid.endpoint.stop()
        await eventually(lambda: b.store.local_snapshot() == {"k": "v"}, what="restore")
        assert [e.key for e in b.kinds(EventKind.RESTORED)] == ["k"]
        stats = b.backups.stats()  # type: ignore[union-attr]
        assert (stats.saved_entries, stats.stored_entries) == (0, 0)
        assert b.metric("hamok_backups_restored_total", backups="hamok-backups") == 1


async def test_detach_and_rejoin_leaves_one_copy_one_saved_one_stored() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        await a.store.set("k", "v")
        await settled(cluster)
        cluster.net.partition({"n0"}, {"n1"})
        await eventually(lambda: b.store.local_keys() == {"k"}, what="restore during the partition")
        cluster.net.heal()
        await cluster.connected()
        await eventually(lambda: len(cluster.owners("k")) == 1, what="collision resolved")
        await settled(cluster)
        stats = [n.backups.stats() for n in cluster.nodes]  # type: ignore[union-attr]
        assert sum(s.saved_entries for s in stats) == 1
        assert sum(s.stored_entries for s in stats) == 1
        assert await a.store.get("k") == "v"


async def test_killed_peer_is_restored_exactly_once_and_re_backed_up() -> None:
    async with Cluster(4, backups=True) as cluster:
        for i, node in enumerate(cluster.nodes):
            await node.store.set_all({f"n{i}-{j}": j for j in range(300)})
        await settled(cluster)
        everything = await cluster.stores[0].keys()
        assert len(everything) == 1200

        victim = cluster.nodes[1]
        lost = victim.store.local_keys()
        await victim.grid.endpoint.stop()
        survivors = [cluster.nodes[0], cluster.nodes[2], cluster.nodes[3]]
        await eventually(lambda: sum(restored_keys(survivors).values()) >= len(lost), what="restore")
        await asyncio.sleep(0.05)
        restored = restored_keys(survivors)
        assert set(restored) == lost and set(restored.values()) == {1}, "every entry restored exactly once"
        assert sum(1 for n in survivors if any(n.kinds(EventKind.RESTORED))) > 1, "spread over the survivors"
        await settled(cluster, survivors)

        # the restored entries were mirrored again: losing a second peer loses nothing
        second = cluster.nodes[2]
        second_keys = second.store.local_keys()
        restored_by_remaining = {k for n in (cluster.nodes[0], cluster.nodes[3])
                                 for k in (e.key for e in n.kinds(EventKind.RESTORED))}
        await second.grid.endpoint.stop()
        remaining = [cluster.nodes[0], cluster.nodes[3]]
        await settled(cluster, remaining)
        assert await remaining[0].store.keys() == everything
        assert sum(n.store.local_size() for n in remaining) == 1200
        again = restored_keys(remaining)
        assert set(again) == restored_by_remaining | second_keys and set(again.values()) == {1}
        owners = Counter(k for n in remaining for k in n.store.local_keys())
        assert set(owners.values()) == {1}


async def test_with_two_copies_a_lost_peer_is_restored_once_then_again_once() -> None:
    async with Cluster(4, backups=True, backup_kwargs={"copies": 2}) as cluster:
        for i, node in enumerate(cluster.nodes):
            await node.store.set_all({f"n{i}-{j}": j for j in range(150)})
        await settled_copies(cluster, 2)
        await cluster.nodes[1].grid.endpoint.stop()
        survivors = [cluster.nodes[0], cluster.nodes[2], cluster.nodes[3]]
        await eventually(lambda: sum(n.store.local_size() for n in survivors) == 600, what="first restore")
        assert set(restored_keys(survivors).values()) == {1}
        await settled_copies(cluster, 2, survivors)  # orphaned copies dropped once the restorers confirmed
        await cluster.nodes[2].grid.endpoint.stop()
        remaining = [cluster.nodes[0], cluster.nodes[3]]
        await eventually(lambda: sum(n.store.local_size() for n in remaining) == 600, what="second restore")
        await asyncio.sleep(0.05)
        owners = Counter(k for n in remaining for k in n.store.local_keys())
        assert len(owners) == 600 and set(owners.values()) == {1}


async def test_two_copies_survive_two_simultaneous_losses() -> None:
    async with Cluster(4, backups=True, backup_kwargs={"copies": 2}) as cluster:
        await cluster.stores[0].set_all({f"k{i}": i for i in range(200)})
        await settled_copies(cluster, 2)
        cluster.net.partition({"n2", "n3"}, {"n0"}, {"n1"})  # n0 and n1 gone at once for n2 and n3
        survivors = [cluster.nodes[2], cluster.nodes[3]]
        await eventually(lambda: sum(n.store.local_size() for n in survivors) == 200, what="restore")
        await asyncio.sleep(0.05)
        restored = restored_keys(survivors)
        assert len(restored) == 200 and set(restored.values()) == {1}


async def settled_copies(cluster: Cluster, copies: int, nodes: list[Node] | None = None) -> None:
    group = nodes if nodes is not None else cluster.nodes

    async def check() -> bool:
        for node in group:
            await node.backups.flush()  # type: ignore[union-attr]
        stats = [n.backups.stats() for n in group]  # type: ignore[union-attr]
        total = sum(n.store.local_size() for n in group)
        return sum(s.stored_entries for s in stats) == copies * total
    await eventually(check, what=f"{copies} copies mirrored")


async def test_last_peer_leaving_loses_nothing_locally() -> None:
    async with Cluster(3, backups=True) as cluster:
        for i, node in enumerate(cluster.nodes):
            await node.store.set_all({f"n{i}-{j}": j for j in range(100)})
        await settled(cluster)
        alone = cluster.nodes[0]
        held = alone.backups.stats().stored_entries  # type: ignore[union-attr]
        assert held > 0
        await alone.grid.endpoint.stop()  # from n0's view both peers leave
        await eventually(lambda: alone.store.local_size() == 100 + held, what="own and held entries kept")
        await alone.backups.flush()  # type: ignore[union-attr]
        assert alone.backups.stats().saved_entries == 0  # type: ignore[union-attr]
        assert alone.backups.stats().stored_entries == 0  # type: ignore[union-attr]


async def test_a_joining_peer_receives_its_share_and_the_old_holder_drops_it() -> None:
    async with Cluster(2, backups=True) as cluster:
        await cluster.stores[0].set_all({f"k{i}": i for i in range(300)})
        await settled(cluster)
        grid = cluster.add_node(2)
        await grid.start()
        await cluster.connected()
        await settled(cluster)
        stored = [n.backups.stats().stored_entries for n in cluster.nodes]  # type: ignore[union-attr]
        assert stored[0] == 0 and stored[1] > 0 and stored[2] > 0 and stored[1] + stored[2] == 300
        owner = cluster.nodes[0].backups
        assert owner is not None
        pool = ["n1", "n2"]
        for i in range(0, 300, 37):
            raw = cluster.stores[0].key_codec.encode(f"k{i}")
            assert owner.saved_holders("calls", f"k{i}") == rendezvous(raw, pool, 1)


async def test_peer_without_backups_is_not_chosen_as_holder() -> None:
    async with Cluster(2, backups=True) as cluster:
        bare = cluster.add_node(2, with_storage=False)
        await bare.start()
        await eventually(lambda: len(bare.remote_peers) == 2, what="bare peer connected")
        await cluster.stores[0].set_all({f"k{i}": i for i in range(100)})
        await eventually(lambda: cluster.nodes[0].backups.stats().saved_entries == 100,  # type: ignore[union-attr]
                         what="all mirrored on n1")
        assert cluster.nodes[1].backups.stats().stored_entries == 100  # type: ignore[union-attr]
        assert cluster.nodes[0].metric("hamok_backups_unacknowledged_total", backups="hamok-backups") >= 1
        await bare.close()


async def test_several_storages_share_one_backups() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        assert a.backups is not None and b.backups is not None
        clients_a = a.grid.separated_storage("clients", backups=a.backups)
        clients_b = b.grid.separated_storage("clients", backups=b.backups)
        await a.store.set("call", 1)
        await clients_a.set("client", 2)
        await a.backups.flush()
        assert a.backups.stats().saved_entries == 2
        assert b.backups.stats().stored_entries == 2
        await a.grid.endpoint.stop()
        await eventually(lambda: clients_b.local_snapshot() == {"client": 2}, what="clients restored")
        assert b.store.local_snapshot() == {"call": 1}
        await clients_a.close()
        await clients_b.close()


async def test_evicted_and_expired_entries_drop_their_mirrors() -> None:
    async with Cluster(2, backups=True, expiration_ms=150) as cluster:
        a, b = cluster.nodes
        await a.store.set_all({"x": 1, "y": 2})
        await settled(cluster)
        await a.store.evict("x")
        await a.backups.flush()  # type: ignore[union-attr]
        assert b.backups.stats().stored_entries == 1  # type: ignore[union-attr]
        await eventually(lambda: a.kinds(EventKind.EXPIRED), what="expiry")
        await a.backups.flush()  # type: ignore[union-attr]
        assert b.backups.stats().stored_entries == 0  # type: ignore[union-attr]


async def test_closing_a_storage_keeps_its_mirrors_for_the_peers() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        await a.store.set("k", "v")
        await settled(cluster)
        await a.store.close()
        await asyncio.sleep(0.05)
        assert b.backups.stats().stored_entries == 1  # type: ignore[union-attr]
        await a.grid.endpoint.stop()
        await eventually(lambda: b.store.local_snapshot() == {"k": "v"}, what="restore after shutdown")


async def test_malformed_mirror_batches_are_dropped_and_counted() -> None:
    async with Cluster(2, backups=True) as cluster:
        a, b = cluster.nodes
        responses = await a.grid.request(Message(MessageType.UPDATE_ENTRIES_REQUEST, storage_id="hamok-backups",
                                                 keys=[b"k"], values=[b"v"], payload={"s": "calls"}))
        assert [r.payload for r in responses] == [0]
        assert b.backups.stats().stored_entries == 0  # type: ignore[union-attr]
        assert b.metric("hamok_backups_dropped_total", backups="hamok-backups", reason="malformed") == 1


def test_rendezvous_is_stable_and_balanced() -> None:
    peers = ["n1", "n2", "n3", "n4"]
    keys = [f"key-{i}".encode() for i in range(4000)]
    owners = Counter(rendezvous(k, peers, 1)[0] for k in keys)
    assert all(800 < count < 1200 for count in owners.values()), owners
    # removing a peer only moves the keys it held
    for key in keys[:500]:
        before = rendezvous(key, peers, 2)
        after = rendezvous(key, ["n1", "n2", "n4"], 2)
        if "n3" not in before:
            assert after == before
        else:
            assert [p for p in before if p != "n3"] == list(after[: len(before) - 1])


def test_backups_validate_their_settings() -> None:
    with pytest.raises(ValueError, match="copies"):
        Backups(object(), copies=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_items"):
        Backups(object(), max_items=0)  # type: ignore[arg-type]
