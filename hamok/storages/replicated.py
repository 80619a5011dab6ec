"""ReplicatedStorage: every entry on every node, every write through the Raft log.

Writes are linearizable: a write returns after its log entry is committed and applied
locally, and its result reflects the committed order (``insert`` is atomic across the
cluster: the first committed insert wins, later ones get the existing value). Reads are
local; ``await storage.sync()`` is a read barrier for read-your-cluster. Optional TTL
expiry (``expiration_ms``, measured from the last write) is decided by the leader and
applied everywhere as one replicated delete, emitting EXPIRED events on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..codec import MSGPACK, Codec
from ..errors import ClosedError, UnsupportedOperationError
from ..messages import Message, MessageType
from .base import Storage
from .events import EventKind
from .memory import MemoryStorage

if TYPE_CHECKING:
    from ..grid import StorageGrid

K = TypeVar("K")
V = TypeVar("V")
logger = logging.getLogger(__name__)

OP_SET_ALL = 1
OP_INSERT_ALL = 2
OP_DELETE_ALL = 3
OP_CLEAR = 4
OP_EXPIRE = 5      # delete the given keys if they were not written after the given timestamps

Result = tuple[list[bytes], list[bytes]]


class ReplicatedStorage(Storage[K, V], Generic[K, V]):
    def __init__(
        self,
        grid: StorageGrid,
        storage_id: str,
        *,
        key_codec: Codec[Any] = MSGPACK,
        value_codec: Codec[Any] = MSGPACK,
        expiration_ms: int = 0,
        max_message_keys: int | None = None,
    ) -> None:
        super().__init__(storage_id)
        self.grid = grid
        self._keys = key_codec
        self._values = value_codec
        self.local: MemoryStorage[K, V] = MemoryStorage(storage_id)
        self.local.events = self.events  # one event stream: applied commands emit on this storage
        self._written_at: dict[K, int] = {}
        self._expiration_ms = expiration_ms
        self._max_keys = max_message_keys or grid.config.max_message_keys
        self._closed = False
        self._expiry_task: asyncio.Task[None] | None = None
        grid.register_storage(storage_id, self)
        grid.machine.register(storage_id, self)
        if expiration_ms > 0:
            self._expiry_task = asyncio.get_running_loop().create_task(self._expire_loop())

    # ------------------------------------------------------------- state machine side
    def apply_command(self, op: int, keys: list[bytes], values: list[bytes], ts: int) -> Result:
        dk, dv = self._keys.decode, self._values.decode
        ek, ev = self._keys.encode, self._values.encode
        local = self.local
        if op == OP_SET_ALL:
            entries = {dk(k): dv(v) for k, v in zip(keys, values, strict=True)}
            old = local.local_set_all(entries)
            self._touch(entries, ts)
            return [ek(k) for k in old], [ev(v) for v in old.values()]
        if op == OP_INSERT_ALL:
            entries = {dk(k): dv(v) for k, v in zip(keys, values, strict=True)}
            existing = local.local_insert_all(entries)
            self._touch((k for k in entries if k not in existing), ts)
            return [ek(k) for k in existing], [ev(v) for v in existing.values()]
        if op == OP_DELETE_ALL:
            deleted = local.local_delete_all([dk(k) for k in keys])
            for k in deleted:
                self._written_at.pop(k, None)
            return [ek(k) for k in deleted], []
        if op == OP_EXPIRE:
            limits = {dk(k): int.from_bytes(v, "big") for k, v in zip(keys, values, strict=True)}
            victims = [k for k, limit in limits.items() if self._written_at.get(k, limit + 1) <= limit]
            expired = local.local_delete_all(victims, EventKind.EXPIRED)
            for k in expired:
                self._written_at.pop(k, None)
            return [ek(k) for k in expired], []
        if op == OP_CLEAR:
            local.local_delete_all(list(local.local_keys()), EventKind.DELETED)
            self._written_at.clear()
            return [], []
        logger.error("unknown replicated op %s on %s", op, self.id)
        return [], []

    def _touch(self, keys: Iterable[K], ts: int) -> None:
        if self._expiration_ms:
            for k in keys:
                self._written_at[k] = ts

    def export_entries(self) -> Result:
        ek, ev = self._keys.encode, self._values.encode
        snapshot = self.local.local_snapshot()
        return [ek(k) for k in snapshot], [ev(v) for v in snapshot.values()]

    def import_entries(self, keys: list[bytes], values: list[bytes]) -> None:
        """Replace the local state (snapshot install): emits the difference as events."""
        dk, dv = self._keys.decode, self._values.decode
        incoming = {dk(k): dv(v) for k, v in zip(keys, values, strict=True)}
        current = self.local.local_snapshot()
        self.local.local_delete_all([k for k in current if k not in incoming], EventKind.EVICTED)
        changed = {k: v for k, v in incoming.items() if k not in current or current[k] != v}
        if changed:
            self.local.local_set_all(changed)
        now = int(time.time() * 1000)
        self._written_at = {k: now for k in incoming} if self._expiration_ms else {}

    # ------------------------------------------------------------- grid endpoint side
    async def on_request(self, message: Message) -> Message | None:
        # peers may read our replica (used for diagnostics and by tooling)
        if message.type == MessageType.GET_KEYS_REQUEST:
            return message.response(keys=[self._keys.encode(k) for k in self.local.local_keys()])
        if message.type == MessageType.GET_ENTRIES_REQUEST:
            found = self.local.local_get_all([self._keys.decode(k) for k in message.keys])
            return message.response(keys=[self._keys.encode(k) for k in found],
                                    values=[self._values.encode(v) for v in found.values()])
        if message.type == MessageType.GET_SIZE_REQUEST:
            return message.response(payload=self.local.local_size())
        return None

    def on_notification(self, message: Message) -> None:
        logger.debug("replicated storage %s ignores %s", self.id, message.type.name)

    # ------------------------------------------------------------- writes
    async def _write(self, op: int, keys: list[bytes], values: list[bytes]) -> Result:
        if self._closed:
            raise ClosedError(f"storage {self.id} is closed")
        out_keys: list[bytes] = []
        out_values: list[bytes] = []
        step = self._max_keys
        for lo in range(0, max(len(keys), 1), step):
            rk, rv = await self.grid.submit(self.id, op, keys[lo:lo + step], values[lo:lo + step])
            out_keys.extend(rk)
            out_values.extend(rv)
        return out_keys, out_values

    def _decode_map(self, result: Result) -> dict[K, V]:
        dk, dv = self._keys.decode, self._values.decode
        return {dk(k): dv(v) for k, v in zip(result[0], result[1], strict=True)}

    async def set_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        if not entries:
            return {}
        ek, ev = self._keys.encode, self._values.encode
        return self._decode_map(await self._write(OP_SET_ALL, [ek(k) for k in entries],
                                                  [ev(v) for v in entries.values()]))

    async def insert_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        if not entries:
            return {}
        ek, ev = self._keys.encode, self._values.encode
        return self._decode_map(await self._write(OP_INSERT_ALL, [ek(k) for k in entries],
                                                  [ev(v) for v in entries.values()]))

    async def delete_all(self, keys: Iterable[K]) -> set[K]:
        encoded = [self._keys.encode(k) for k in keys]
        if not encoded:
            return set()
        deleted, _ = await self._write(OP_DELETE_ALL, encoded, [])
        return {self._keys.decode(k) for k in deleted}

    async def clear(self) -> None:
        await self._write(OP_CLEAR, [], [])

    async def evict_all(self, keys: Iterable[K]) -> None:
        raise UnsupportedOperationError("a replicated storage cannot evict: every node holds every entry")

    async def restore_all(self, entries: Mapping[K, V]) -> None:
        raise UnsupportedOperationError("a replicated storage cannot restore: writes go through the raft log")

    # ------------------------------------------------------------- reads (local)
    async def get_all(self, keys: Iterable[K]) -> dict[K, V]:
        return self.local.local_get_all(keys)

    async def keys(self) -> set[K]:
        return self.local.local_keys()

    async def size(self) -> int:
        return self.local.local_size()

    async def sync(self, timeout_ms: int | None = None) -> None:
        await self.grid.sync(timeout_ms)

    # ------------------------------------------------------------- expiry (leader decides)
    async def _expire_loop(self) -> None:
        interval = max(0.05, min(self._expiration_ms / 4, 1000) / 1000)
        while True:
            await asyncio.sleep(interval)
            if not self.grid.is_leader or not self._written_at:
                continue
            limit = int(time.time() * 1000) - self._expiration_ms
            victims = [(k, ts) for k, ts in self._written_at.items() if ts <= limit]
            if not victims:
                continue
            keys = [self._keys.encode(k) for k, _ in victims]
            stamps = [ts.to_bytes(8, "big") for _, ts in victims]
            try:
                await self._write(OP_EXPIRE, keys, stamps)
            except Exception as exc:  # a failed sweep is retried at the next interval
                logger.warning("expiry sweep of %s failed: %s", self.id, exc)

    async def close(self) -> None:
        self._closed = True
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
        self.grid.unregister_storage(self.id)
