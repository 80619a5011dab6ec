"""MemoryStorage contract (reference memorystorages tests, spec §2.1): bulk and single-key
operations, merge op, events, idle expiry (lazy and swept), restore, close, collected events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hamok.storages.events import EventKind, StorageEvent
from hamok.storages.memory import MemoryStorage, RestoreConflictError

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def recording(storage: MemoryStorage[Any, Any]) -> list[StorageEvent[Any, Any]]:
    events: list[StorageEvent[Any, Any]] = []
    storage.events.subscribe(events.append)
    return events


def kinds(events: list[StorageEvent[Any, Any]]) -> list[tuple[EventKind, Any]]:
    return [(e.kind, e.key) for e in events]


async def test_id_size_empty_keys() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    assert storage.id == "s"
    assert await storage.is_empty() and await storage.size() == 0 and await storage.keys() == set()
    await storage.set_all({"a": 1, "b": 2})
    assert not await storage.is_empty()
    assert await storage.size() == 2 == storage.local_size()
    assert await storage.keys() == {"a", "b"}
    assert "a" in storage and "z" not in storage


async def test_get_and_set_return_values_and_events() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    events = recording(storage)
    assert await storage.set("a", 1) is None
    assert await storage.set("a", 2) == 1
    assert await storage.set_all({"a": 3, "b": 4}) == {"a": 2}
    assert await storage.get("a") == 3
    assert await storage.get("missing") is None
    assert await storage.get_all(["a", "b", "c"]) == {"a": 3, "b": 4}
    assert kinds(events) == [(EventKind.CREATED, "a"), (EventKind.UPDATED, "a"), (EventKind.UPDATED, "a"),
                             (EventKind.CREATED, "b")]
    assert (events[1].old_value, events[1].new_value) == (1, 2)


async def test_merge_op_on_set_and_set_all() -> None:
    storage: MemoryStorage[str, list[int]] = MemoryStorage("s", merge=lambda old, new: old + new)
    events = recording(storage)
    await storage.set("a", [1])
    assert await storage.set("a", [2]) == [1]
    assert await storage.set_all({"a": [3], "b": [9]}) == {"a": [1, 2]}
    assert storage.local_snapshot() == {"a": [1, 2, 3], "b": [9]}
    assert events[-2].new_value == [1, 2, 3]


async def test_insert_keeps_existing_values() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    events = recording(storage)
    assert await storage.insert("one", 1) is None
    assert await storage.insert("one", 2) == 1
    assert await storage.insert_all({"one": 2, "two": 2}) == {"one": 1}
    assert storage.local_snapshot() == {"one": 1, "two": 2}
    assert kinds(events) == [(EventKind.CREATED, "one"), (EventKind.CREATED, "two")]


async def test_delete_and_delete_all() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    await storage.set_all({"a": 1, "b": 2, "c": 3})
    events = recording(storage)
    assert await storage.delete("a") is True
    assert await storage.delete("a") is False
    assert await storage.delete_all(["b", "c", "d"]) == {"b", "c"}
    assert kinds(events) == [(EventKind.DELETED, "a"), (EventKind.DELETED, "b"), (EventKind.DELETED, "c")]
    assert events[0].old_value == 1 and events[0].new_value is None


async def test_clear_and_evict_emit_evicted() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    await storage.set_all({"a": 1, "b": 2, "c": 3})
    events = recording(storage)
    await storage.evict("a")
    await storage.evict_all(["b", "missing"])
    await storage.clear()
    assert kinds(events) == [(EventKind.EVICTED, "a"), (EventKind.EVICTED, "b"), (EventKind.EVICTED, "c")]
    assert await storage.is_empty()


async def test_restore_fails_on_existing_keys_without_changes() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    events = recording(storage)
    await storage.restore("a", 1)
    await storage.restore_all({"b": 2, "c": 3})
    with pytest.raises(RestoreConflictError):
        await storage.restore("a", 9)
    with pytest.raises(RestoreConflictError):
        await storage.restore_all({"d": 4, "b": 9})
    assert storage.local_snapshot() == {"a": 1, "b": 2, "c": 3}
    assert kinds(events) == [(EventKind.RESTORED, "a"), (EventKind.RESTORED, "b"), (EventKind.RESTORED, "c")]


async def test_close_clears() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s", expiration_ms=1000, sweep_interval_ms=10)
    await storage.set_all({"a": 1})
    events = recording(storage)
    await storage.close()
    assert storage.local_size() == 0
    assert kinds(events) == [(EventKind.EVICTED, "a")]


async def test_iteration_over_entries() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    await storage.set_all({f"k{i}": i for i in range(25)})
    assert dict([kv async for kv in storage.items(batch_size=7)]) == {f"k{i}": i for i in range(25)}


async def test_idle_expiry_is_lazy_and_refreshed_by_access() -> None:
    clock = Clock()
    storage: MemoryStorage[str, int] = MemoryStorage("s", expiration_ms=100, clock=clock)
    events = recording(storage)
    await storage.set_all({"read": 1, "idle": 2, "written": 3})
    clock.now += 60
    assert await storage.get("read") == 1
    await storage.set("written", 4)
    clock.now += 60  # "idle" is 120 ms idle, the others 60 ms
    assert await storage.get_all(["read", "idle", "written"]) == {"read": 1, "written": 4}
    assert [(e.kind, e.key, e.old_value) for e in events if e.kind == EventKind.EXPIRED] == [
        (EventKind.EXPIRED, "idle", 2)]
    clock.now += 100
    assert await storage.size() == 0
    assert {e.key for e in events if e.kind == EventKind.EXPIRED} == {"read", "idle", "written"}


async def test_expired_entries_are_swept_without_access() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s", expiration_ms=100, sweep_interval_ms=20)
    events = recording(storage)
    await storage.set_all({"a": 1, "b": 2})
    for _ in range(50):
        if len([e for e in events if e.kind == EventKind.EXPIRED]) == 2:
            break
        await asyncio.sleep(0.01)
    assert {e.key for e in events if e.kind == EventKind.EXPIRED} == {"a", "b"}
    assert storage.local_size() == 0
    await storage.close()


async def test_expiry_disabled_keeps_entries() -> None:
    clock = Clock()
    storage: MemoryStorage[str, int] = MemoryStorage("s", clock=clock)
    await storage.set("a", 1)
    clock.now += 10**9
    assert await storage.get("a") == 1
    assert storage.expired_keys() == []


async def test_get_all_accepts_a_one_shot_iterable_with_expiry() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s", expiration_ms=1000)
    await storage.set_all({"a": 1, "b": 2})
    assert await storage.get_all(k for k in ["a", "b"]) == {"a": 1, "b": 2}


async def test_get_all_accepts_a_one_shot_iterable_without_expiry() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    await storage.set_all({"a": 1, "b": 2})
    assert await storage.get_all(k for k in ["a", "b"]) == {"a": 1, "b": 2}


async def test_listener_failure_does_not_break_the_mutation() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")

    def broken(event: StorageEvent[Any, Any]) -> None:
        raise RuntimeError("boom")

    events: list[StorageEvent[Any, Any]] = []
    storage.events.subscribe(broken)
    unsubscribe = storage.events.subscribe(events.append)
    await storage.set("a", 1)
    assert storage.local_snapshot() == {"a": 1} and len(events) == 1
    unsubscribe()
    await storage.set("b", 2)
    assert len(events) == 1


async def test_collected_events_flush_on_size_and_on_time() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    collector = storage.collect_events(max_items=3, max_time_ms=30)
    batches: list[list[StorageEvent[Any, Any]]] = []
    collector.subscribe(batches.append)
    await storage.set_all({"a": 1, "b": 2, "c": 3, "d": 4})
    assert [len(b) for b in batches] == [3]  # size flush, synchronous
    await asyncio.sleep(0.06)
    assert [len(b) for b in batches] == [3, 1]  # time flush of the rest
    await asyncio.sleep(0.05)
    assert len(batches) == 2  # nothing collected after a flush, nothing emitted twice
    collector.close()
    await storage.set("e", 5)
    await asyncio.sleep(0.05)
    assert len(batches) == 2


async def test_collected_events_async_listener() -> None:
    storage: MemoryStorage[str, int] = MemoryStorage("s")
    collector = storage.collect_events(max_items=2, max_time_ms=1000)
    seen: list[Any] = []

    async def consume(batch: list[StorageEvent[Any, Any]]) -> None:
        await asyncio.sleep(0)
        seen.extend(e.new_value for e in batch)

    collector.subscribe(consume)
    await storage.set_all({"a": 1, "b": 2})
    await asyncio.sleep(0.01)
    assert seen == [1, 2]
    collector.close()
