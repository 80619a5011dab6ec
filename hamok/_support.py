"""Small pieces shared by the grid and its storages: background tasks and per-registry metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry

M = TypeVar("M")


class BackgroundTasks:
    """Tasks an object starts and must cancel when it closes; a task's failure is logged, never lost."""

    def __init__(self, logger: logging.Logger, owner: str) -> None:
        self._logger = logger
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.error("background task of %s failed", self._owner, exc_info=task.exception())

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def cancel_and_wait(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class PerRegistry(Generic[M]):
    """One set of collectors per registry, so several grids or storages can share a registry
    (labelled by their id) without registering a metric name twice."""

    def __init__(self, factory: Callable[[CollectorRegistry], M]) -> None:
        self._factory = factory
        self._cache: weakref.WeakKeyDictionary[CollectorRegistry, M] = weakref.WeakKeyDictionary()

    def __call__(self, registry: CollectorRegistry | None) -> M:
        reg = registry if registry is not None else CollectorRegistry()
        metrics = self._cache.get(reg)
        if metrics is None:
            metrics = self._cache[reg] = self._factory(reg)
        return metrics
