"""Splitting bulk operations into per-message batches and running them with bounded concurrency."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Batches of one bulk operation in flight at once: enough to hide the round trip when the
# message limit is tiny, few enough not to flood a peer's socket with one caller's work.
MAX_BATCHES_IN_FLIGHT = 16


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``; ``size <= 0`` means one slice.

    The reference looped forever when its key limit was 0; here a non-positive limit
    simply disables splitting.
    """
    if not items:
        return []
    if size <= 0 or len(items) <= size:
        return [items]
    return [items[lo : lo + size] for lo in range(0, len(items), size)]


async def gather_limited(awaitables: Iterable[Awaitable[T]], limit: int = MAX_BATCHES_IN_FLIGHT) -> list[T]:
    """Await all, at most ``limit`` at a time, results in input order."""
    pending = list(awaitables)
    if len(pending) == 1:
        return [await pending[0]]
    gate = asyncio.Semaphore(max(1, limit))

    async def one(awaitable: Awaitable[T]) -> T:
        try:
            async with gate:
                return await awaitable
        except asyncio.CancelledError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # cancelled while queued at the gate: never started
            raise

    return list(await asyncio.gather(*(one(a) for a in pending)))
