"""Bulk storage calls shared by the entity updaters (empty inputs make no request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from observer.reports.model import Report

E = TypeVar("E")
K = TypeVar("K")


async def get_all(storage: Any, keys: Iterable[K]) -> dict[K, Any]:
    keys = keys if isinstance(keys, set | frozenset | dict) else set(keys)
    return await storage.get_all(keys) if keys else {}


async def set_all(storage: Any, entries: Mapping[K, Any]) -> dict[K, Any]:
    return await storage.set_all(entries) if entries else {}


async def insert_all(storage: Any, entries: Mapping[K, Any]) -> dict[K, Any]:
    return await storage.insert_all(entries) if entries else {}


async def delete_all(storage: Any, keys: Iterable[K]) -> set[K]:
    keys = keys if isinstance(keys, set | frozenset | dict) else set(keys)
    return await storage.delete_all(keys) if keys else set()


async def write_created(set_all_fn: Callable[[Mapping[str, E]], Awaitable[dict[str, E]]], entities: dict[str, E],
                        event: Callable[..., Report], now: int, *,
                        quiet: Collection[str] = ()) -> tuple[list[Report], list[E]]:
    """Store the entities; the opening events and the entities of exactly the ones this write created
    (that did not exist before). ``quiet`` keys open no event and are not counted as created: they
    are re-created from the lifecycle journal, their opening event was emitted long ago."""
    if not entities:
        return [], []
    previous = await set_all_fn(entities)
    created = [entity for key, entity in entities.items() if key not in previous and key not in quiet]
    return [event(entity, opened=True, now=now) for entity in created], created
