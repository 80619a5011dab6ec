"""Local in-memory storage: the base every distributed storage keeps its local entries in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from ..errors import HamokError
from .base import Storage
from .events import EventKind, StorageEvent

K = TypeVar("K")
V = TypeVar("V")


def _now_ms() -> int:
    return int(time.time() * 1000)


class RestoreConflictError(HamokError):
    """restore_all found keys that already exist."""


class MemoryStorage(Storage[K, V]):
    """A dict with events, an optional merge operation and optional idle expiry.

    Everything runs on the event loop thread, so no locks are needed (and the Java
    version's read-lock mutation bug cannot exist). Expiry is idle based: reads and
    writes refresh an entry; an idle entry expires on access or on the periodic sweep
    (only started with ``sweep_interval_ms``) and emits an EXPIRED event.
    """

    def __init__(
        self,
        storage_id: str,
        *,
        merge: Callable[[V, V], V] | None = None,
        expiration_ms: int = 0,
        sweep_interval_ms: int = 0,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        super().__init__(storage_id)
        self._data: dict[K, V] = {}
        self._touched: dict[K, int] = {}
        self._merge = merge
        self._expiration_ms = expiration_ms
        self._clock = clock
        self._sweeper: asyncio.Task[None] | None = None
        if expiration_ms > 0 and sweep_interval_ms > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(sweep_interval_ms))

    # ---- synchronous core (used by distributed storages when applying committed entries)
    def local_get_all(self, keys: Iterable[K]) -> dict[K, V]:
        keys = list(keys)  # read twice below: a one-shot iterable must not be used up by expiry
        self._expire_some(keys)
        data, now = self._data, self._clock()
        found = {k: data[k] for k in keys if k in data}
        if self._expiration_ms:
            for k in found:
                self._touched[k] = now
        return found

    def local_set_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        self._expire_some(entries.keys())
        old: dict[K, V] = {}
        data, now, emit = self._data, self._clock(), self.events.emit if self.events else None
        for key, value in entries.items():
            if key in data:
                prev = data[key]
                old[key] = prev
                new = self._merge(prev, value) if self._merge is not None else value
                data[key] = new
                if emit:
                    emit(StorageEvent(EventKind.UPDATED, key, prev, new, now))
            else:
                data[key] = value
                if emit:
                    emit(StorageEvent(EventKind.CREATED, key, None, value, now))
            if self._expiration_ms:
                self._touched[key] = now
        return old

    def local_insert_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        self._expire_some(entries.keys())
        data = self._data
        existing = {k: data[k] for k in entries if k in data}
        missing = {k: v for k, v in entries.items() if k not in data}
        if missing:
            self.local_set_all(missing)
        return existing

    def local_delete_all(self, keys: Iterable[K], kind: EventKind = EventKind.DELETED) -> set[K]:
        deleted: set[K] = set()
        data, now, emit = self._data, self._clock(), self.events.emit if self.events else None
        for key in keys:
            if key in data:
                value = data.pop(key)
                self._touched.pop(key, None)
                deleted.add(key)
                if emit:
                    emit(StorageEvent(kind, key, value, None, now))
        return deleted

    def local_restore_all(self, entries: Mapping[K, V]) -> None:
        conflicts = [k for k in entries if k in self._data]
        if conflicts:
            raise RestoreConflictError(f"cannot restore existing keys: {conflicts[:5]}")
        now, emit = self._clock(), self.events.emit if self.events else None
        for key, value in entries.items():
            self._data[key] = value
            if self._expiration_ms:
                self._touched[key] = now
            if emit:
                emit(StorageEvent(EventKind.RESTORED, key, None, value, now))

    def local_clear(self) -> None:
        """Clear emits EVICTED per entry (the entries leave this node, they are not deleted by a user)."""
        self.local_delete_all(list(self._data), EventKind.EVICTED)

    def local_keys(self) -> set[K]:
        self._expire_some(None)
        return set(self._data)

    def local_size(self) -> int:
        return len(self._data)

    def local_snapshot(self) -> dict[K, V]:
        return dict(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # ---- expiry
    def expired_keys(self, now: int | None = None) -> list[K]:
        if not self._expiration_ms:
            return []
        limit = (self._clock() if now is None else now) - self._expiration_ms
        return [k for k, t in self._touched.items() if t <= limit]

    def _expire_some(self, keys: Iterable[K] | None) -> None:
        if not self._expiration_ms:
            return
        limit = self._clock() - self._expiration_ms
        touched = self._touched
        if keys is None:
            victims = [k for k, t in touched.items() if t <= limit]
        else:
            victims = [k for k in keys if touched.get(k, limit + 1) <= limit]
        if victims:
            self.local_delete_all(victims, EventKind.EXPIRED)

    async def _sweep_loop(self, interval_ms: int) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            self._expire_some(None)

    # ---- Storage API
    async def get_all(self, keys: Iterable[K]) -> dict[K, V]:
        return self.local_get_all(keys)

    async def set_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        return self.local_set_all(entries)

    async def insert_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        return self.local_insert_all(entries)

    async def delete_all(self, keys: Iterable[K]) -> set[K]:
        return self.local_delete_all(keys)

    async def evict_all(self, keys: Iterable[K]) -> None:
        self.local_delete_all(keys, EventKind.EVICTED)

    async def restore_all(self, entries: Mapping[K, V]) -> None:
        self.local_restore_all(entries)

    async def clear(self) -> None:
        self.local_clear()

    async def keys(self) -> set[K]:
        return self.local_keys()

    async def size(self) -> int:
        self._expire_some(None)
        return len(self._data)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.local_clear()
