"""SeparatedStorage: each entry lives on the node that created it (spec/hamok.md §2.4).

No raft: a node keeps the entries it created (its *local* entries) and asks its peers for
the rest. Every network operation is bulk: one request per peer per batch of
``max_message_keys`` keys, never one per key, and a peer that lacks the storage answers at
once (the grid replies NO_STORAGE for it), so nothing waits for a timeout.

Semantics
* ``get_all``: local hits, the missing keys from every peer in one request round.
* ``set_all``: keys held locally are written here; the others are offered to the peers,
  which update the keys they hold (their merge op applies) and return the previous
  values; keys no peer holds are created here.
* ``insert_all``: existing entries (local, then remote) are returned untouched; the rest
  are created here. Not atomic across nodes: two nodes inserting the same new key at the
  same moment both create it (a collision, resolved as below).
* ``delete_all``: local first, the remaining keys on the peers; the union is returned.
* ``clear``, ``evict_all``, ``restore_all``: **local entries only** (clear and evict emit
  EVICTED). Backups and collision handling use evict/restore to move entries between nodes.
* ``keys``/``size``/``items``: one request round to every peer (``items`` iterates over a
  key snapshot, fetching values per owner in batches of ``iterator_batch_size``; entries
  deleted meanwhile are skipped). ``size`` counts a colliding key once per holder.

Collisions: after a partition (or a concurrent insert) the same key can be owned by two
nodes. They are detected when two peers answer the same key (``get_all``, ``set_all``,
``insert_all``) and by ``check_collisions()`` (our local keys against the peers'), which
runs by itself when a peer joins (``check_collisions_on_join``). Resolution keeps the most
recently written copy: every local entry carries the wall-clock time (µs) of its last write
on its owner, carried along by backups; ties go to the larger node id. The older copies are
evicted on their nodes, but only if they were not written again since they were compared,
so a concurrent write is never thrown away by a stale decision. Listeners registered with
``on_collision`` get a ``Collision`` per key, and the ``hamok_separated_collisions`` counter
counts them. Wall clocks of the nodes are assumed to be roughly in sync (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

from .._support import BackgroundTasks, PerRegistry
from ..codec import MSGPACK, Codec
from ..errors import ClosedError
from ..messages import Message, MessageType, response_type_of
from .base import Storage
from .batching import chunks, gather_limited
from .events import EventKind, StorageEvent
from .memory import MemoryStorage

if TYPE_CHECKING:
    from ..grid import StorageGrid
    from .backups import Backups

K = TypeVar("K")
V = TypeVar("V")
logger = logging.getLogger(__name__)

# GET_KEYS_REQUEST payload asking "which of these keys do you hold, and when were they
# written" (values of the response = 8-byte big-endian write stamps, parallel to the keys,
# so the grid's response chunking keeps them aligned).
STAMPS_QUERY = "stamps"

_WRITES = frozenset({EventKind.CREATED, EventKind.UPDATED, EventKind.RESTORED})


def now_us() -> int:
    return time.time_ns() // 1000


def pack_stamp(stamp: int) -> bytes:
    return stamp.to_bytes(8, "big")


def unpack_stamp(data: bytes) -> int:
    return int.from_bytes(data, "big")


@attrs.frozen
class Collision:
    """One key that was owned by more than one node; ``winner`` kept it, the others evicted it."""

    storage_id: str
    key: Any
    holders: tuple[str, ...]
    winner: str


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.collisions = Counter("hamok_separated_collisions", "Keys found owned by more than one node",
                                  ["storage"], registry=registry)
        self.collision_evictions = Counter(
            "hamok_separated_collision_evictions", "Older copies of colliding keys evicted", ["storage"],
            registry=registry)
        self.dropped = Counter("hamok_separated_dropped_entries",
                               "Keys or values from peers that could not be decoded", ["storage"],
                               registry=registry)
        self.requests = Counter("hamok_separated_requests", "Request rounds sent to the peers",
                                ["storage", "type"], registry=registry)
        self.local_entries = Gauge("hamok_separated_local_entries", "Entries owned by this node",
                                   ["storage"], registry=registry)


_metrics_for = PerRegistry(_Metrics)


class SeparatedStorage(Storage[K, V], Generic[K, V]):
    def __init__(
        self,
        grid: StorageGrid,
        storage_id: str,
        *,
        key_codec: Codec[Any] = MSGPACK,
        value_codec: Codec[Any] = MSGPACK,
        merge: Callable[[V, V], V] | None = None,
        expiration_ms: int = 0,
        backups: Backups | None = None,
        iterator_batch_size: int = 300,
        check_collisions_on_join: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if iterator_batch_size <= 0:
            raise ValueError(f"iterator_batch_size: must be > 0, got {iterator_batch_size}")
        if expiration_ms < 0:
            raise ValueError(f"expiration_ms: must be >= 0, got {expiration_ms}")
        super().__init__(storage_id)
        grid.register_storage(storage_id, self)  # first: a duplicate id fails before anything starts
        self.grid = grid
        self.key_codec = key_codec
        self.value_codec = value_codec
        self.iterator_batch_size = iterator_batch_size
        sweep_ms = max(50, min(expiration_ms // 4, 1000)) if expiration_ms else 0
        self.local: MemoryStorage[K, V] = MemoryStorage(
            storage_id, merge=merge, expiration_ms=expiration_ms, sweep_interval_ms=sweep_ms)
        self.local.events = self.events  # local mutations emit on this storage's stream
        self._stamps: dict[K, int] = {}
        self.events.subscribe(self._track_stamp)  # first listener: stamps are current for the others
        self._collision_listeners: list[Callable[[Collision], None]] = []
        self._metrics = _metrics_for(registry)
        self._metrics.local_entries.labels(storage_id).set_function(self.local.local_size)
        self._tasks = BackgroundTasks(logger, f"separated storage {storage_id}")
        self._join_checks: set[str] = set()
        self._join_checker: asyncio.Task[None] | None = None
        self._closed = False
        self._handlers: dict[MessageType, Callable[[Message], Message]] = {
            MessageType.GET_ENTRIES_REQUEST: self._on_get_entries,
            MessageType.GET_KEYS_REQUEST: self._on_get_keys,
            MessageType.GET_SIZE_REQUEST: self._on_get_size,
            MessageType.UPDATE_ENTRIES_REQUEST: self._on_update_entries,
            MessageType.DELETE_ENTRIES_REQUEST: self._on_delete_entries,
            MessageType.REMOVE_ENTRIES_REQUEST: self._on_remove_entries,
            MessageType.EVICT_ENTRIES_REQUEST: self._on_evict_entries,
        }
        self._grid_unsubscribe = (
            grid.events.on("peer_joined", self._on_peer_joined) if check_collisions_on_join else None
        )
        self.backups = backups
        if backups is not None:
            backups.attach(self)

    # ------------------------------------------------------------------ local views
    def local_keys(self) -> set[K]:
        return self.local.local_keys()

    def local_size(self) -> int:
        return self.local.local_size()

    def local_is_empty(self) -> bool:
        return self.local.local_size() == 0

    def local_get_all(self, keys: Iterable[K]) -> dict[K, V]:
        return self.local.local_get_all(list(keys))

    def local_snapshot(self) -> dict[K, V]:
        """A copy of the local entries (does not refresh idle expiry)."""
        return self.local.local_snapshot()

    def local_clear(self) -> None:
        self.local.local_clear()

    def write_stamp(self, key: K) -> int:
        """Wall-clock µs of the last write of a local entry (0 if not held)."""
        return self._stamps.get(key, 0)

    def _track_stamp(self, event: StorageEvent[K, V]) -> None:
        if event.kind in _WRITES:
            self._stamps[event.key] = now_us()
        else:
            self._stamps.pop(event.key, None)

    # ------------------------------------------------------------------ collisions
    def on_collision(self, listener: Callable[[Collision], None]) -> Callable[[], None]:
        self._collision_listeners.append(listener)
        return lambda: self._collision_listeners.remove(listener) if (
            listener in self._collision_listeners) else None

    async def check_collisions(self, peers: Iterable[str] | None = None) -> list[Collision]:
        """Compare our local keys with the peers' (all connected, or ``peers``) and resolve
        every key found on more than one node. One request round per batch of keys."""
        self._check_open()
        keys = list(self.local.local_snapshot())
        if not keys or not self.grid.remote_peers:
            return []
        stamps = await self._remote_stamps(keys, peers)
        return await self._settle(stamps)

    async def _resolve(self, keys: Sequence[K]) -> dict[K, str]:
        """Resolve keys known to be on several nodes; returns key -> winning node."""
        stamps = await self._remote_stamps(keys, None)
        await self._settle(stamps)
        return {k: max(h.items(), key=_newest)[0] for k, h in stamps.items() if h}

    async def _remote_stamps(self, keys: Sequence[K], peers: Iterable[str] | None) -> dict[K, dict[str, int]]:
        encode = self.key_codec.encode
        responses = await self._request_batched(
            MessageType.GET_KEYS_REQUEST, [encode(k) for k in keys], payload=STAMPS_QUERY, destinations=peers)
        stamps: dict[K, dict[str, int]] = {}
        for response in responses:
            for key, raw in self._decode_pairs(response.keys, response.values, _identity):
                stamps.setdefault(key, {})[response.source] = unpack_stamp(raw)
        return stamps

    async def _settle(self, stamps: dict[K, dict[str, int]]) -> list[Collision]:
        """Given key -> {node: write stamp} from the peers, add ours, keep the newest copy of
        every key held more than once and evict the others (if not written since)."""
        local_id = self.grid.local_id
        for key, holders in stamps.items():
            if key in self.local:
                holders[local_id] = self._stamps.get(key, 0)
        collisions: list[Collision] = []
        losers: dict[str, dict[K, int]] = {}
        for key, holders in stamps.items():
            if len(holders) < 2:
                continue
            winner = max(holders.items(), key=_newest)[0]
            for node, stamp in holders.items():
                if node != winner:
                    losers.setdefault(node, {})[key] = stamp
            collisions.append(Collision(self.id, key, tuple(sorted(holders)), winner))
        if not collisions:
            return []
        self._metrics.collisions.labels(self.id).inc(len(collisions))
        evicted = len(self._evict_unless_newer(losers.pop(local_id, {})))
        encode = self.key_codec.encode
        calls = []
        for node, doomed in losers.items():
            calls.append(self._request_batched(
                MessageType.EVICT_ENTRIES_REQUEST, [encode(k) for k in doomed],
                [pack_stamp(s) for s in doomed.values()], destinations=(node,)))
        for responses in await asyncio.gather(*calls):
            evicted += sum(len(r.keys) for r in responses)
        self._metrics.collision_evictions.labels(self.id).inc(evicted)
        logger.info("%s: %d colliding keys in %s resolved (%d copies evicted)", local_id, len(collisions),
                    self.id, evicted)
        for collision in collisions:
            for listener in tuple(self._collision_listeners):
                try:
                    listener(collision)
                except Exception:
                    logger.exception("collision listener failed")
        return collisions

    def _evict_unless_newer(self, doomed: Mapping[K, int]) -> set[K]:
        """Evict local entries whose write stamp is not newer than the one they were judged by."""
        stamps = self._stamps
        victims = [k for k, stamp in doomed.items() if k in self.local and stamps.get(k, 0) <= stamp]
        return self.local.local_delete_all(victims, EventKind.EVICTED) if victims else set()

    def _resolve_in_background(self, keys: Sequence[K]) -> None:
        self._spawn(self._resolve(keys))

    def _on_peer_joined(self, peer: str) -> None:
        if self._closed:
            return
        self._join_checks.add(peer)
        if self._join_checker is None or self._join_checker.done():
            self._join_checker = self._spawn(self._run_join_checks())

    async def _run_join_checks(self) -> None:
        while self._join_checks:
            peers, self._join_checks = self._join_checks, set()
            try:
                await self.check_collisions(peers & self.grid.remote_peers)
            except ClosedError:
                return
            except Exception as exc:
                logger.warning("collision check of %s with %s failed: %s", self.id, sorted(peers), exc)

    # ------------------------------------------------------------------ Storage API
    async def get_all(self, keys: Iterable[K]) -> dict[K, V]:
        self._check_open()
        wanted = list(dict.fromkeys(keys))
        found = self.local.local_get_all(wanted)
        if len(found) < len(wanted) and self.grid.remote_peers:
            found.update(await self._remote_get([k for k in wanted if k not in found]))
        return found

    async def set_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        self._check_open()
        if not entries:
            return {}
        local = self.local
        mine = {k: v for k, v in entries.items() if k in local}
        old = local.local_set_all(mine) if mine else {}
        rest = {k: v for k, v in entries.items() if k not in mine} if mine else dict(entries)
        if rest and self.grid.remote_peers:
            updated = await self._remote_update(rest)
            old.update(updated)
            for key in updated:
                rest.pop(key, None)
        if rest:
            # created here; keys created locally by a concurrent call meanwhile are updated
            old.update(local.local_set_all(rest))
        return old

    async def insert_all(self, entries: Mapping[K, V]) -> dict[K, V]:
        self._check_open()
        if not entries:
            return {}
        existing = self.local.local_get_all([k for k in entries if k in self.local])
        missing = {k: v for k, v in entries.items() if k not in existing}
        if missing and self.grid.remote_peers:
            remote = await self._remote_get(list(missing))
            existing.update(remote)
            for key in remote:
                missing.pop(key, None)
        if missing:
            existing.update(self.local.local_insert_all(missing))
        return existing

    async def delete_all(self, keys: Iterable[K]) -> set[K]:
        self._check_open()
        wanted = list(dict.fromkeys(keys))
        deleted = self.local.local_delete_all(wanted)
        rest = [k for k in wanted if k not in deleted]
        if rest and self.grid.remote_peers:
            encoded = [self.key_codec.encode(k) for k in rest]
            responses = await self._request_batched(MessageType.DELETE_ENTRIES_REQUEST, encoded)
            asked = set(rest)
            for response in responses:
                deleted.update(k for k in self._decode_keys(response.keys) if k in asked)
        return deleted

    async def clear(self) -> None:
        """Local entries only (each node clears what it owns); emits EVICTED."""
        self._check_open()
        self.local.local_clear()

    async def evict_all(self, keys: Iterable[K]) -> None:
        """Drop local entries (EVICTED events); peers are not asked."""
        self._check_open()
        self.local.local_delete_all(list(keys), EventKind.EVICTED)

    async def restore_all(self, entries: Mapping[K, V]) -> None:
        """Create local entries (RESTORED events); fails (RestoreConflictError) without
        changing anything if any key already exists locally."""
        self._check_open()
        self.local.local_restore_all(entries)

    def restore_from_backup(self, entries: Mapping[K, tuple[V, int]]) -> set[K]:
        """Restore entries of a lost peer with their original write stamps; keys that exist
        locally are left alone (ours is kept). Returns the restored keys."""
        fresh = {k: v for k, (v, _) in entries.items() if k not in self.local}
        if not fresh:
            return set()
        self.local.local_restore_all(fresh)
        for key in fresh:
            self._stamps[key] = entries[key][1]
        return set(fresh)

    async def keys(self) -> set[K]:
        self._check_open()
        result = self.local.local_keys()
        for response in await self._request(MessageType.GET_KEYS_REQUEST):
            result.update(self._decode_keys(response.keys))
        return result

    async def size(self) -> int:
        self._check_open()
        total = await self.local.size()
        for response in await self._request(MessageType.GET_SIZE_REQUEST):
            if isinstance(response.payload, int):
                total += response.payload
        return total

    async def is_empty(self) -> bool:
        self._check_open()
        if await self.local.size():
            return False
        return await self.size() == 0

    async def items(self, batch_size: int | None = None) -> AsyncIterator[tuple[K, V]]:
        """Every entry of the grid: a key snapshot taken up front, values fetched in batches
        from each key's owner. Entries deleted meanwhile are skipped (never yielded as None)."""
        self._check_open()
        size = batch_size if batch_size is not None and batch_size > 0 else self.iterator_batch_size
        mine = list(self.local.local_keys())
        seen: set[K] = set(mine)
        owners: dict[str, list[K]] = {}
        for response in await self._request(MessageType.GET_KEYS_REQUEST):
            fresh = [k for k in self._decode_keys(response.keys) if k not in seen]
            seen.update(fresh)
            owners[response.source] = fresh
        for batch in chunks(mine, size):
            for key, value in self.local.local_get_all(batch).items():
                yield key, value
        encode = self.key_codec.encode
        for owner, keys in owners.items():
            for batch in chunks(keys, size):
                for response in await self._request(MessageType.GET_ENTRIES_REQUEST,
                                                    [encode(k) for k in batch], destinations=(owner,)):
                    for key, value in self._decode_entries(response):
                        yield key, value

    # ------------------------------------------------------------------ remote operations
    async def _remote_get(self, keys: Sequence[K]) -> dict[K, V]:
        encode = self.key_codec.encode
        responses = await self._request_batched(MessageType.GET_ENTRIES_REQUEST, [encode(k) for k in keys])
        found: dict[K, V] = {}
        by_holder: dict[K, dict[str, V]] = {}
        collided: list[K] = []
        asked = set(keys)
        for response in responses:
            for key, value in self._decode_entries(response):
                if key not in asked:
                    continue  # a peer answering what nobody asked is ignored
                holders = by_holder.setdefault(key, {})
                if holders and len(holders) == 1:
                    collided.append(key)
                holders[response.source] = value
                found[key] = value
        if collided:
            # answer with the newest copy, and evict the others
            winners = await self._resolve(collided)
            for key in collided:
                winner = winners.get(key, "")
                if winner in by_holder[key]:
                    found[key] = by_holder[key][winner]
        return found

    async def _remote_update(self, entries: Mapping[K, V]) -> dict[K, V]:
        ek, ev = self.key_codec.encode, self.value_codec.encode
        responses = await self._request_batched(
            MessageType.UPDATE_ENTRIES_REQUEST, [ek(k) for k in entries], [ev(v) for v in entries.values()])
        old: dict[K, V] = {}
        collided: list[K] = []
        for response in responses:
            for key, value in self._decode_entries(response):
                if key not in entries:
                    continue
                if key in old:
                    collided.append(key)
                old[key] = value
        if collided:
            self._resolve_in_background(collided)
        return old

    async def _request(self, mtype: MessageType, keys: list[bytes] | None = None,
                       values: list[bytes] | None = None, *, payload: Any = None,
                       destinations: Iterable[str] | None = None) -> list[Message]:
        if not self.grid.remote_peers:
            return []
        self._check_open()
        self._metrics.requests.labels(self.id, mtype.name).inc()
        message = Message(mtype, storage_id=self.id, keys=keys or [], values=values or [], payload=payload)
        return await self.grid.request(message, destinations)

    async def _request_batched(self, mtype: MessageType, keys: list[bytes], values: list[bytes] | None = None,
                               *, payload: Any = None,
                               destinations: Iterable[str] | None = None) -> list[Message]:
        """One request per batch of max_message_keys keys, each to all (or the given) peers."""
        if not keys or not self.grid.remote_peers:
            return []
        limit = self.grid.config.max_message_keys
        targets = tuple(destinations) if destinations is not None else None
        calls = [
            self._request(mtype, list(batch), list(values[lo:lo + len(batch)]) if values else None,
                          payload=payload, destinations=targets)
            for lo, batch in _offsets(chunks(keys, limit))
        ]
        return [response for responses in await gather_limited(calls) for response in responses]

    # ------------------------------------------------------------------ handlers (peers asking us)
    async def on_request(self, message: Message) -> Message | None:
        handler = self._handlers.get(message.type)
        if handler is None or self._closed:
            return _empty_response(message)  # an empty answer at once rather than a requester timeout
        try:
            return handler(message)
        except Exception:
            logger.exception("separated storage %s failed to answer %s from %s", self.id, message.type.name,
                             message.source)
            return _empty_response(message)

    def on_notification(self, message: Message) -> None:
        if self._closed:
            return
        if message.type == MessageType.UPDATE_ENTRIES_NOTIFICATION:
            held = {k: v for k, v in self._decode_entries(message) if k in self.local}
            if held:
                self.local.local_set_all(held)
        elif message.type == MessageType.DELETE_ENTRIES_NOTIFICATION:
            self.local.local_delete_all(self._decode_keys(message.keys))
        else:
            logger.debug("separated storage %s ignores %s", self.id, message.type.name)

    def _on_get_entries(self, message: Message) -> Message:
        found = self.local.local_get_all(self._decode_keys(message.keys))
        return self._entries_response(message, found)

    def _on_get_keys(self, message: Message) -> Message:
        encode = self.key_codec.encode
        if message.payload == STAMPS_QUERY:
            local, stamps = self.local, self._stamps
            held = [k for k in self._decode_keys(message.keys) if k in local]
            return message.response(keys=[encode(k) for k in held],
                                    values=[pack_stamp(stamps.get(k, 0)) for k in held])
        return message.response(keys=[encode(k) for k in self.local.local_keys()])

    def _on_get_size(self, message: Message) -> Message:
        # entries idle past their expiry are counted until the next sweep (<= 1 s)
        return message.response(payload=self.local.local_size())

    def _on_update_entries(self, message: Message) -> Message:
        held = {k: v for k, v in self._decode_entries(message) if k in self.local}
        return self._entries_response(message, self.local.local_set_all(held) if held else {})

    def _on_delete_entries(self, message: Message) -> Message:
        deleted = self.local.local_delete_all(self._decode_keys(message.keys))
        encode = self.key_codec.encode
        return message.response(keys=[encode(k) for k in deleted])

    def _on_remove_entries(self, message: Message) -> Message:
        """Delete and hand back the removed entries (keys + values)."""
        local = self.local
        removed = local.local_get_all([k for k in self._decode_keys(message.keys) if k in local])
        local.local_delete_all(list(removed))
        return self._entries_response(message, removed)

    def _on_evict_entries(self, message: Message) -> Message:
        keys = self._decode_keys(message.keys)
        if message.values and len(message.values) == len(message.keys):
            conditions = {k: unpack_stamp(s) for k, s in zip(keys, message.values, strict=False)}
            evicted = self._evict_unless_newer(conditions)
        else:
            evicted = self.local.local_delete_all(keys, EventKind.EVICTED)
        encode = self.key_codec.encode
        return message.response(keys=[encode(k) for k in evicted])

    def _entries_response(self, request: Message, entries: Mapping[K, V]) -> Message:
        ek, ev = self.key_codec.encode, self.value_codec.encode
        return request.response(keys=[ek(k) for k in entries], values=[ev(v) for v in entries.values()])

    # ------------------------------------------------------------------ decoding
    def _decode_keys(self, raw: Iterable[bytes]) -> list[K]:
        decode = self.key_codec.decode
        out: list[K] = []
        for item in raw:
            try:
                out.append(decode(item))
            except Exception:
                self._drop("key")
        return out

    def _decode_entries(self, message: Message) -> list[tuple[K, V]]:
        return self._decode_pairs(message.keys, message.values, self.value_codec.decode)

    def _decode_pairs(self, keys: list[bytes], values: list[bytes],
                      decode_value: Callable[[bytes], Any]) -> list[tuple[K, Any]]:
        if len(keys) != len(values):
            self._drop("entry count", len(keys))
            return []
        decode_key = self.key_codec.decode
        out: list[tuple[K, Any]] = []
        for raw_key, raw_value in zip(keys, values, strict=True):
            try:
                out.append((decode_key(raw_key), decode_value(raw_value)))
            except Exception:
                self._drop("entry")
        return out

    def _drop(self, what: str, count: int = 1) -> None:
        self._metrics.dropped.labels(self.id).inc(count)
        logger.warning("separated storage %s dropped %d undecodable %s from a peer", self.id, count, what)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"storage {self.id} is closed")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    async def close(self) -> None:
        """Leave the grid. Backups are detached first, so the mirrors of our entries stay on
        the peers (they restore them when this node leaves the grid)."""
        if self._closed:
            return
        self._closed = True
        if self._grid_unsubscribe is not None:
            self._grid_unsubscribe()
        await self._tasks.cancel_and_wait()
        if self.backups is not None:
            self.backups.detach(self)
        self.grid.unregister_storage(self.id)
        with contextlib.suppress(KeyError):
            self._metrics.local_entries.remove(self.id)
        await self.local.close()


def _newest(item: tuple[str, int]) -> tuple[int, str]:
    node, stamp = item
    return stamp, node


def _identity(data: bytes) -> bytes:
    return data


def _offsets(batches: list[Sequence[bytes]]) -> list[tuple[int, Sequence[bytes]]]:
    out: list[tuple[int, Sequence[bytes]]] = []
    offset = 0
    for batch in batches:
        out.append((offset, batch))
        offset += len(batch)
    return out


def _empty_response(message: Message) -> Message | None:
    try:
        response_type_of(message.type)
    except ValueError:
        return None
    return message.response()
