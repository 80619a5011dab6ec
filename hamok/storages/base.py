"""The storage contract every hamok storage fulfils (spec/hamok.md §2.1), all async."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Generic, TypeVar

from ..errors import UnsupportedOperationError
from .events import EventCollector, StorageEvents

K = TypeVar("K")
V = TypeVar("V")


class Storage(abc.ABC, Generic[K, V]):
    """Key/value storage with events. Bulk operations are the primary form; single-key
    operations are conveniences built on them, so every storage kind implements the bulk ones."""

    def __init__(self, storage_id: str) -> None:
        self.id = storage_id
        self.events: StorageEvents[K, V] = StorageEvents()

    # -- bulk operations (implemented by each kind)
    @abc.abstractmethod
    async def get_all(self, keys: Iterable[K]) -> dict[K, V]:
        """Found entries only."""

    @abc.abstractmethod
    async def set_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        """Store every entry; returns the previous values of the keys that existed."""

    @abc.abstractmethod
    async def insert_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        """Store entries whose key is absent; returns the already existing entries (not overwritten)."""

    @abc.abstractmethod
    async def delete_all(self, keys: Iterable[K]) -> set[K]:
        """Returns the keys that existed and were deleted."""

    @abc.abstractmethod
    async def clear(self) -> None: ...

    @abc.abstractmethod
    async def keys(self) -> set[K]: ...

    @abc.abstractmethod
    async def size(self) -> int: ...

    async def evict_all(self, keys: Iterable[K]) -> None:
        raise UnsupportedOperationError(f"{type(self).__name__} does not support evict")

    async def restore_all(self, entries: Mapping[K, V]) -> None:
        raise UnsupportedOperationError(f"{type(self).__name__} does not support restore")

    # -- single-key conveniences
    async def get(self, key: K) -> V | None:
        return (await self.get_all((key,))).get(key)

    async def set(self, key: K, value: V) -> V | None:
        return (await self.set_all({key: value})).get(key)

    async def insert(self, key: K, value: V) -> V | None:
        """None when inserted; else the existing value (left unchanged)."""
        return (await self.insert_all({key: value})).get(key)

    async def delete(self, key: K) -> bool:
        return key in await self.delete_all((key,))

    async def evict(self, key: K) -> None:
        await self.evict_all((key,))

    async def restore(self, key: K, value: V) -> None:
        await self.restore_all({key: value})

    async def is_empty(self) -> bool:
        return await self.size() == 0

    async def items(self, batch_size: int = 300) -> AsyncIterator[tuple[K, V]]:
        """Iterate over a snapshot of the keys, fetching values in batches (entries deleted
        meanwhile are skipped, never yielded as None)."""
        keys = list(await self.keys())
        for start in range(0, len(keys), batch_size):
            found = await self.get_all(keys[start : start + batch_size])
            for key in keys[start : start + batch_size]:
                if key in found:
                    yield key, found[key]

    def __aiter__(self) -> AsyncIterator[tuple[K, V]]:
        return self.items()

    def collect_events(self, max_items: int = 100, max_time_ms: int = 100) -> EventCollector[K, V]:
        return EventCollector(self.events, max_items, max_time_ms)

    async def close(self) -> None:
        """Release resources; the storage must not be used afterwards."""
