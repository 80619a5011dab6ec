"""The replicated state machine behind every ReplicatedStorage of a grid.

Each raft log entry is one msgpack command. Storage commands carry the origin node and a
request id, and the machine remembers the result of the last requests of every origin,
so a command re-submitted after a leader change is applied once and answered with the
first result (the reference re-sent writes under new ids and could apply them twice).
Snapshots hold every storage's entries, the cluster identity and that dedupe table.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Protocol

import msgpack

logger = logging.getLogger(__name__)

CMD_NOOP = 0
CMD_CLUSTER = 1
CMD_STORAGE = 2

DEDUPE_PER_ORIGIN = 512

Result = tuple[list[bytes], list[bytes]]


class ReplicatedStateHolder(Protocol):
    """What a replicated storage exposes to the machine."""

    def apply_command(self, op: int, keys: list[bytes], values: list[bytes], ts: int) -> Result: ...

    def export_entries(self) -> Result: ...

    def import_entries(self, keys: list[bytes], values: list[bytes]) -> None: ...


def encode_command(kind: int, *fields: Any) -> bytes:
    return msgpack.packb((kind, *fields), use_bin_type=True)


class GridStateMachine:
    def __init__(self) -> None:
        self.storages: dict[str, ReplicatedStateHolder] = {}
        self.cluster: tuple[str, int] | None = None     # (cluster id, created at ms)
        self._applied: dict[str, OrderedDict[str, Result]] = {}
        self._orphans: dict[str, Result] = {}           # snapshot data of storages not registered yet
        self.applied_commands = 0
        self.duplicates_skipped = 0
        self.restores = 0
        self.on_cluster_changed: Any = None

    def register(self, storage_id: str, holder: ReplicatedStateHolder) -> None:
        self.storages[storage_id] = holder
        orphan = self._orphans.pop(storage_id, None)
        if orphan is not None:
            holder.import_entries(*orphan)

    def reset(self) -> None:
        """Forget everything (the node is about to replay another cluster's log)."""
        self.cluster = None
        self._applied.clear()
        self._orphans.clear()
        for holder in self.storages.values():
            holder.import_entries([], [])

    # ---- pysyncobj consumer side
    def apply(self, command: bytes) -> Any:
        fields = msgpack.unpackb(command, raw=False)
        kind = fields[0]
        if kind == CMD_STORAGE:
            _, storage_id, origin, request_id, op, keys, values, ts = fields
            seen = self._applied.setdefault(origin, OrderedDict())
            if request_id in seen:
                self.duplicates_skipped += 1
                return seen[request_id]
            holder = self.storages.get(storage_id)
            if holder is None:
                logger.warning("committed command for unknown replicated storage %s dropped", storage_id)
                result: Result = ([], [])
            else:
                result = holder.apply_command(op, keys, values, ts)
            seen[request_id] = result
            if len(seen) > DEDUPE_PER_ORIGIN:
                seen.popitem(last=False)
            self.applied_commands += 1
            return result
        if kind == CMD_CLUSTER:
            if self.cluster is None:
                self.cluster = (fields[1], fields[2])
                if self.on_cluster_changed is not None:
                    self.on_cluster_changed()
            return self.cluster
        return None  # CMD_NOOP: read barrier

    def snapshot(self) -> bytes:
        storages = {sid: holder.export_entries() for sid, holder in self.storages.items()}
        storages.update({sid: data for sid, data in self._orphans.items() if sid not in storages})
        applied = {origin: list(seen.items()) for origin, seen in self._applied.items()}
        return msgpack.packb((self.cluster, storages, applied), use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.restores += 1
        cluster, storages, applied = msgpack.unpackb(data, raw=False, strict_map_key=False)
        old_cluster = self.cluster
        self.cluster = tuple(cluster) if cluster is not None else None
        self._applied = {
            origin: OrderedDict((rid, (res[0], res[1])) for rid, res in items) for origin, items in applied.items()
        }
        for sid, holder in self.storages.items():
            keys, values = storages.pop(sid, ([], []))
            holder.import_entries(keys, values)
        self._orphans = {sid: (kv[0], kv[1]) for sid, kv in storages.items()}
        if self.cluster != old_cluster and self.on_cluster_changed is not None:
            self.on_cluster_changed()
