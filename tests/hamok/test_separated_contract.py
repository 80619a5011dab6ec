"""The storage contract (spec §2.1, reference SeparatedStorageSpecificationTest) for a
SeparatedStorage on one node, and across 2 and 3 nodes where the entries are owned by
another node than the one the operations are called on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hamok.storages.events import EventKind
from hamok.storages.memory import RestoreConflictError

from .test_separated_harness import Cluster, Node, eventually

pytestmark = pytest.mark.timeout(30)


class Setup:
    """``caller`` runs the operations; ``owner`` created the entries they touch."""

    def __init__(self, cluster: Cluster, caller: Node, owner: Node) -> None:
        self.cluster = cluster
        self.caller = caller
        self.owner = owner


@pytest.fixture(params=[1, 2, 3], ids=["1-node", "2-nodes", "3-nodes"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    async with Cluster(request.param) as cluster:
        yield Setup(cluster, cluster.nodes[0], cluster.nodes[-1])


async def test_id(setup: Setup) -> None:
    assert setup.caller.store.id == "calls"


async def test_empty_and_size(setup: Setup) -> None:
    caller, owner = setup.caller.store, setup.owner.store
    assert await caller.is_empty()
    assert await caller.size() == 0
    await owner.set_all({"one": 1, "two": 2})
    assert not await caller.is_empty()
    assert await caller.size() == 2
    assert owner.local_size() == 2


async def test_keys(setup: Setup) -> None:
    await setup.owner.store.set_all({"one": 1, "two": 2})
    await setup.caller.store.set("three", 3)
    for node in setup.cluster.nodes:
        assert await node.store.keys() == {"one", "two", "three"}


async def test_get_and_get_all(setup: Setup) -> None:
    await setup.owner.store.set_all({"one": 1, "two": 2})
    caller = setup.caller.store
    assert await caller.get("one") == 1
    assert await caller.get("missing") is None
    assert await caller.get_all(["one", "two", "missing"]) == {"one": 1, "two": 2}
    assert await caller.get_all(iter(["two"])) == {"two": 2}
    assert await caller.get_all([]) == {}


async def test_set_returns_previous_and_emits_created_then_updated(setup: Setup) -> None:
    owner = setup.owner
    assert await owner.store.set("one", 1) is None
    await eventually(lambda: owner.kinds(EventKind.CREATED), within=1.0, what="created event")
    assert await setup.caller.store.set("one", 11) == 1
    updated = owner.kinds(EventKind.UPDATED)
    assert [(e.key, e.old_value, e.new_value) for e in updated] == [("one", 1, 11)]
    assert setup.cluster.owners("one") == [owner.id]


async def test_set_all_updates_where_owned_and_creates_the_rest_on_the_caller(setup: Setup) -> None:
    await setup.owner.store.set_all({"one": 1})
    assert await setup.caller.store.set_all({"one": 10, "two": 20}) == {"one": 1}
    assert setup.cluster.owners("one") == [setup.owner.id]
    assert setup.cluster.owners("two") == [setup.caller.id]
    assert await setup.owner.store.get_all(["one", "two"]) == {"one": 10, "two": 20}
    created_by_caller = [e.key for e in setup.caller.kinds(EventKind.CREATED)]
    assert created_by_caller == (["one", "two"] if setup.caller is setup.owner else ["two"])


async def test_insert_returns_none_and_emits_created(setup: Setup) -> None:
    assert await setup.owner.store.insert("one", 1) is None
    assert await setup.owner.store.insert_all({"two": 2}) == {}
    assert {e.key for e in setup.owner.kinds(EventKind.CREATED)} == {"one", "two"}


async def test_second_insert_returns_existing_and_does_not_overwrite(setup: Setup) -> None:
    await setup.owner.store.insert("one", 1)
    caller = setup.caller.store
    assert await caller.insert("one", 2) == 1
    assert await caller.insert_all({"one": 2, "two": 2}) == {"one": 1}
    assert await caller.get_all(["one", "two"]) == {"one": 1, "two": 2}
    assert setup.cluster.owners("one") == [setup.owner.id]
    assert setup.cluster.owners("two") == [setup.caller.id]


async def test_delete_and_delete_all_emit_deleted_on_the_owner(setup: Setup) -> None:
    await setup.owner.store.set_all({"one": 1, "two": 2, "three": 3})
    caller = setup.caller.store
    assert await caller.delete("one") is True
    assert await caller.delete("one") is False
    assert await caller.delete_all(["two", "three", "missing"]) == {"two", "three"}
    assert {e.key for e in setup.owner.kinds(EventKind.DELETED)} == {"one", "two", "three"}
    assert await caller.is_empty()


async def test_iteration_yields_every_entry_once(setup: Setup) -> None:
    await setup.owner.store.set_all({f"o{i}": i for i in range(25)})
    await setup.caller.store.set_all({f"c{i}": i for i in range(7)})
    caller = setup.caller.store
    seen = [(k, v) async for k, v in caller.items(batch_size=4)]
    assert len(seen) == 32
    assert dict(seen) == {**{f"o{i}": i for i in range(25)}, **{f"c{i}": i for i in range(7)}}
    assert dict([kv async for kv in caller]) == dict(seen)


async def test_clear_is_local(setup: Setup) -> None:
    await setup.owner.store.set_all({"one": 1, "two": 2})
    await setup.caller.store.clear()
    expected_left = 0 if setup.caller is setup.owner else 2
    assert await setup.owner.store.size() == expected_left
    await setup.owner.store.clear()
    assert await setup.caller.store.is_empty()
    assert {e.key for e in setup.owner.kinds(EventKind.EVICTED)} == {"one", "two"}
    assert not setup.owner.kinds(EventKind.DELETED)


async def test_evict_and_restore_work_on_local_entries(setup: Setup) -> None:
    owner = setup.owner.store
    await owner.set_all({"one": 1, "two": 2})
    await owner.evict("one")
    await owner.evict_all(["two", "missing"])
    assert owner.local_is_empty()
    assert [e.key for e in setup.owner.kinds(EventKind.EVICTED)] == ["one", "two"]
    await owner.restore("one", 1)
    await owner.restore_all({"two": 2})
    assert [e.key for e in setup.owner.kinds(EventKind.RESTORED)] == ["one", "two"]
    with pytest.raises(RestoreConflictError):
        await owner.restore_all({"two": 22, "three": 3})
    assert owner.local_snapshot() == {"one": 1, "two": 2}
    assert await setup.caller.store.get_all(["one", "two"]) == {"one": 1, "two": 2}


async def test_merge_op_applies_to_remote_updates() -> None:
    def union(old: list[str], new: list[str]) -> list[str]:
        return sorted(set(old) | set(new))

    async with Cluster(2, merge=union) as cluster:
        a, b = cluster.stores
        await a.set("call", ["c1"])
        assert await b.set("call", ["c2"]) == ["c1"]
        assert await b.set_all({"call": ["c3"]}) == {"call": ["c1", "c2"]}
        assert a.local_snapshot() == {"call": ["c1", "c2", "c3"]}
        assert b.local_size() == 0


async def test_idle_entries_expire_on_their_owner() -> None:
    async with Cluster(2, expiration_ms=100) as cluster:
        a, b = cluster.stores
        await a.set_all({"one": 1, "two": 2})
        await eventually(lambda: cluster.nodes[0].kinds(EventKind.EXPIRED), within=1.5, what="expiry")
        await eventually(lambda: a.local_size() == 0, within=1.0, what="both expired")
        assert await b.get_all(["one", "two"]) == {}
        assert {e.key for e in cluster.nodes[0].kinds(EventKind.EXPIRED)} == {"one", "two"}


async def test_operations_after_close_raise() -> None:
    from hamok.errors import ClosedError

    async with Cluster(1) as cluster:
        store = cluster.stores[0]
        await store.close()
        with pytest.raises(ClosedError):
            await store.get("one")
        with pytest.raises(ClosedError):
            await store.set("one", 1)
