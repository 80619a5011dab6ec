"""Storage events: single-event subscriptions and time/size-batched collections."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

K = TypeVar("K")
V = TypeVar("V")
logger = logging.getLogger(__name__)


class EventKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    EXPIRED = "expired"
    EVICTED = "evicted"
    RESTORED = "restored"


@attrs.frozen(slots=True)
class StorageEvent(Generic[K, V]):
    kind: EventKind
    key: K
    old_value: V | None
    new_value: V | None
    timestamp_ms: int = attrs.field(factory=lambda: int(time.time() * 1000))


Listener = Callable[[StorageEvent[Any, Any]], None]


class StorageEvents(Generic[K, V]):
    """Synchronous fan-out of storage events to listeners, emitted after each mutation.

    A listener that raises is logged and kept; it never breaks the mutation or other listeners.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: StorageEvent[K, V]) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("storage event listener failed on %s", event.kind)

    def __bool__(self) -> bool:
        return bool(self._listeners)


BatchListener = Callable[[list[StorageEvent[Any, Any]]], Any]


class EventCollector(Generic[K, V]):
    """Buffers events and hands them over in batches: when ``max_items`` are buffered, or
    ``max_time_ms`` after the first buffered event, whichever comes first.

    A batch listener may be a coroutine function; it is then awaited in its own task so a
    slow consumer does not stall the storage.
    """

    def __init__(self, events: StorageEvents[K, V], max_items: int = 100, max_time_ms: int = 100) -> None:
        self.max_items = max(1, max_items)
        self.max_time_ms = max(0, max_time_ms)
        self._buffer: list[StorageEvent[K, V]] = []
        self._listeners: list[BatchListener] = []
        self._timer: asyncio.TimerHandle | None = None
        self._unsubscribe = events.subscribe(self._on_event)
        self._tasks: set[asyncio.Task[Any]] = set()

    def subscribe(self, listener: BatchListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _on_event(self, event: StorageEvent[K, V]) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self.max_items:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: flushed on the next size trigger or explicit flush()
            self._timer = loop.call_later(self.max_time_ms / 1000, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for listener in tuple(self._listeners):
            try:
                result = listener(batch)
                if asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._task_done)
            except Exception:
                logger.exception("collected storage event listener failed")

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("collected storage event listener failed", exc_info=task.exception())

    def close(self) -> None:
        self.flush()
        self._unsubscribe()
