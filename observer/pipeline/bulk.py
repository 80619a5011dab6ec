"""Bulk storage calls shared by the entity updaters (empty inputs make no request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from observer.reports.model import Report

E = TypeVar("E")


async def get_all(storage: Any, keys: Iterable[str]) -> dict[str, Any]:
    keys = keys if isinstance(keys, set | frozenset | dict) else set(keys)
    return await storage.get_all(keys) if keys else {}


async def set_all(storage: Any, entries: Mapping[str, Any]) -> dict[str, Any]:
    return await storage.set_all(entries) if entries else {}


async def insert_all(storage: Any, entries: Mapping[str, Any]) -> dict[str, Any]:
    return await storage.insert_all(entries) if entries else {}


async def delete_all(storage: Any, keys: Iterable[str]) -> set[str]:
    keys = keys if isinstance(keys, set | frozenset | dict) else set(keys)
    return await storage.delete_all(keys) if keys else set()


async def write_created(set_all_fn: Callable[[Mapping[str, E]], Awaitable[dict[str, E]]], entities: dict[str, E],
                        event: Callable[..., Report], now: int) -> list[Report]:
    """Store the entities; the opening event of each one that did not exist before (exactly the
    ones this write created)."""
    if not entities:
        return []
    previous = await set_all_fn(entities)
    return [event(entity, opened=True, now=now) for key, entity in entities.items() if key not in previous]
