"""Backups: the entries of separated storages mirrored on other peers, restored when a peer is lost.

One ``Backups`` per grid (registered like a storage under its own id) serves every separated
storage attached to it. Roles, per entry:

* **owner** (the node holding the entry): created / updated / restored entries are mirrored
  to ``copies`` holders; deleted, evicted and expired entries have their mirrors removed.
  Changes are buffered, coalesced per key (only the latest state of a key is shipped) and
  flushed every ``flush_ms`` or at ``max_items`` changes, in bulk requests of at most
  ``max_message_keys`` keys per holder; a flush waits for the holders' acknowledgements
  before the next one starts, so changes to a key reach its holders in order.
* **holder**: keeps the mirrors in memory (value bytes, the owner's write stamp and the
  ordered list of the entry's holders).

Holders are chosen by rendezvous hashing of the key over the connected peers that hold a
backups endpoint, so when a peer leaves only the keys it held move, and when one joins only
the keys it now ranks first for move to it. Whenever the membership changes the owner
reconciles: every local entry whose holder list differs from the wanted one is shipped again
(to all its holders, so they agree on the list) and dropped from the former holders.

When a peer detaches, each holder of its mirrors restores an entry only if it is the first
holder in the entry's list that is still connected: with consistent membership views
exactly one survivor restores each entry. Restoring goes through the storage's
``restore_from_backup`` (RESTORED events, the original write stamp kept, keys that exist
locally left alone) and restored entries are mirrored again like any other write. With
``copies > 1`` the other holders keep their copies (as orphans) until the restorer confirms
(EVICT_ENTRIES_NOTIFICATION) that it mirrored the entries again; if the restorer is lost
first, the next holder in line restores them. When the last peer leaves, every mirror held
here is restored and nothing is lost locally.

Limits: an entry written less than one flush before its owner dies is lost; a holder that
does not acknowledge (no backups endpoint, or slower than the request timeout) is left out
of the holder choice until it reconnects; restore decisions assume the survivors see the
same membership (a survivor still connected to a peer the others lost defers to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

from .._support import PerRegistry
from ..codec import Codec
from ..errors import ClosedError
from ..messages import Message, MessageType
from .batching import chunks, gather_limited
from .events import EventKind, StorageEvent, StorageEvents

if TYPE_CHECKING:
    from ..grid import StorageGrid

logger = logging.getLogger(__name__)

_WRITES = frozenset({EventKind.CREATED, EventKind.UPDATED, EventKind.RESTORED})
_GONE = object()  # pending marker: the key left its owner, drop its mirrors


class BackupSource(Protocol):
    """What a storage offers to be backed up (SeparatedStorage implements it)."""

    id: str
    events: StorageEvents[Any, Any]
    key_codec: Codec[Any]
    value_codec: Codec[Any]

    def write_stamp(self, key: Any) -> int: ...

    def local_snapshot(self) -> dict[Any, Any]: ...

    def restore_from_backup(self, entries: Mapping[Any, tuple[Any, int]]) -> set[Any]: ...


@attrs.frozen
class BackupStats:
    saved_entries: int    # our entries mirrored on peers (acknowledged)
    stored_entries: int   # mirrors of the peers' entries held here (also those of lost peers kept
                          # until their restorer confirmed it mirrored them again)
    stored_bytes: int     # value bytes of those mirrors
    pending: int          # changed keys waiting for the next flush


@attrs.define(slots=True)
class _Mirror:
    value: bytes
    stamp: int
    holders: tuple[str, ...]


_MASK = (1 << 64) - 1


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=4096)
def _peer_seed(peer: str) -> int:
    return _hash64(peer.encode())


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def rendezvous(key: bytes, peers: Iterable[str], count: int) -> tuple[str, ...]:
    """The ``count`` peers ranking highest for ``key`` (highest random weight), best first."""
    base = _hash64(key)
    ranked = sorted(peers, key=lambda p: (_mix(base ^ _peer_seed(p)), p), reverse=True)
    return tuple(ranked[:count])


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.saved = Gauge("hamok_backups_saved_entries", "Local entries mirrored on peers",
                           ["backups"], registry=registry)
        self.stored = Gauge("hamok_backups_stored_entries", "Mirrors of peers' entries held here",
                            ["backups"], registry=registry)
        self.stored_bytes = Gauge("hamok_backups_stored_bytes", "Value bytes of the mirrors held here",
                                  ["backups"], registry=registry)
        self.pending = Gauge("hamok_backups_pending", "Changed keys waiting for the next flush",
                             ["backups"], registry=registry)
        self.restored = Counter("hamok_backups_restored", "Entries of lost peers restored here",
                                ["backups"], registry=registry)
        self.restore_conflicts = Counter(
            "hamok_backups_restore_conflicts", "Mirrors not restored because the key exists locally",
            ["backups"], registry=registry)
        self.dropped = Counter("hamok_backups_dropped",
                               "Mirrors or messages dropped (malformed, unknown storage)",
                               ["backups", "reason"], registry=registry)
        self.unacked = Counter("hamok_backups_unacknowledged", "Mirror batches a holder did not acknowledge",
                               ["backups"], registry=registry)


_metrics_for = PerRegistry(_Metrics)


class Backups:
    def __init__(
        self,
        grid: StorageGrid,
        backups_id: str = "hamok-backups",
        *,
        copies: int = 1,
        flush_ms: int = 100,
        max_items: int = 1000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if copies < 1:
            raise ValueError(f"copies: must be >= 1, got {copies}")
        if flush_ms < 0:
            raise ValueError(f"flush_ms: must be >= 0, got {flush_ms}")
        if max_items < 1:
            raise ValueError(f"max_items: must be >= 1, got {max_items}")
        self.grid = grid
        self.id = backups_id
        self.copies = copies
        self.flush_ms = flush_ms
        self.max_items = max_items
        self._sources: dict[str, BackupSource] = {}
        self._source_unsubscribe: dict[str, Callable[[], None]] = {}
        self._pending: dict[str, dict[Any, Any]] = {}
        self._pending_size = 0
        self._saved: dict[str, dict[bytes, tuple[str, ...]]] = {}      # sid -> key bytes -> holders
        self._stored: dict[str, dict[tuple[str, bytes], _Mirror]] = {}  # owner -> (sid, key) -> mirror
        self._stored_bytes = 0
        # mirrors of lost owners that another holder is restoring: kept until it confirms
        self._orphans: dict[str, dict[tuple[str, bytes], _Mirror]] = {}
        self._confirm: set[str] = set()     # lost owners whose restored entries we must confirm
        self._unavailable: set[str] = set()   # peers that failed to acknowledge, until they rejoin
        self._reconcile_needed = False
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        metrics = self._metrics = _metrics_for(registry)
        metrics.saved.labels(backups_id).set_function(lambda: self.stats().saved_entries)
        metrics.stored.labels(backups_id).set_function(lambda: self.stats().stored_entries)
        metrics.stored_bytes.labels(backups_id).set_function(lambda: self._stored_bytes)
        metrics.pending.labels(backups_id).set_function(lambda: self._pending_size)
        grid.register_storage(backups_id, self)
        self._grid_unsubscribe = [
            grid.events.on("peer_joined", self._on_peer_joined),
            grid.events.on("peer_detached", self._on_peer_detached),
        ]

    # ------------------------------------------------------------------ storages
    def attach(self, source: BackupSource) -> None:
        """Back up ``source``'s local entries from now on (existing ones included)."""
        if self._closed:
            raise ClosedError(f"backups {self.id} are closed")
        if source.id in self._sources:
            raise ValueError(f"storage {source.id!r} is already attached to backups {self.id!r}")
        self._sources[source.id] = source
        sid = source.id
        self._source_unsubscribe[sid] = source.events.subscribe(lambda event: self._on_event(sid, event))
        self._request_reconcile()

    def detach(self, source: BackupSource) -> None:
        """Stop following ``source``. Its mirrors stay on the holders, so they are restored
        by the peers when this node leaves."""
        if self._sources.get(source.id) is not source:
            return
        del self._sources[source.id]
        self._source_unsubscribe.pop(source.id)()
        dropped = self._pending.pop(source.id, None)
        if dropped:
            self._pending_size -= len(dropped)

    def stats(self) -> BackupStats:
        return BackupStats(
            saved_entries=sum(len(s) for s in self._saved.values()),
            stored_entries=sum(len(s) for s in self._stored.values())
            + sum(len(s) for s in self._orphans.values()),
            stored_bytes=self._stored_bytes,
            pending=self._pending_size,
        )

    def saved_holders(self, storage_id: str, key: Any) -> tuple[str, ...]:
        """The peers holding an acknowledged mirror of a local entry."""
        source = self._sources.get(storage_id)
        if source is None:
            return ()
        return self._saved.get(storage_id, {}).get(source.key_codec.encode(key), ())

    # ------------------------------------------------------------------ owner side
    def _on_event(self, sid: str, event: StorageEvent[Any, Any]) -> None:
        if not self.grid.remote_peers and not self._saved.get(sid):
            return  # alone and nothing mirrored: the reconcile on the next join ships everything
        bucket = self._pending.setdefault(sid, {})
        if event.key not in bucket:
            self._pending_size += 1
        bucket[event.key] = event.new_value if event.kind in _WRITES else _GONE
        if self._pending_size >= self.max_items or self.flush_ms == 0:
            self._kick()
        elif self._timer is None and self._flusher is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_ms / 1000, self._kick)

    def _request_reconcile(self) -> None:
        self._reconcile_needed = True
        self._kick()

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed or (self._flusher is not None and not self._flusher.done()):
            return
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def flush(self) -> None:
        """Ship what is pending now and wait until the holders acknowledged it."""
        self._kick()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def _flush_loop(self) -> None:
        try:
            while (self._pending or self._reconcile_needed) and not self._closed:
                if self._reconcile_needed:
                    self._reconcile_needed = False
                    self._reconcile()
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                batch, self._pending, self._pending_size = self._pending, {}, 0
                try:
                    await self._ship(batch)
                except ClosedError:
                    return
                except Exception:
                    logger.exception("backups %s: flush failed", self.id)
            if self._confirm and not self._closed:
                self._send_confirmations()
        finally:
            self._flusher = None

    def _pool(self) -> list[str]:
        return sorted(self.grid.remote_peers - self._unavailable)

    def _reconcile(self) -> None:
        """Queue every local entry whose mirrors are not where they should be, and the
        mirrors of entries that are gone."""
        pool = self._pool()
        for sid, source in self._sources.items():
            saved = self._saved.setdefault(sid, {})
            if not pool:
                saved.clear()  # nobody to hold mirrors (those we had are unreachable)
                continue
            bucket = self._pending.setdefault(sid, {})
            encode, decode = source.key_codec.encode, source.key_codec.decode
            live: set[bytes] = set()
            for key, value in source.local_snapshot().items():
                raw = encode(key)
                live.add(raw)
                if key not in bucket and saved.get(raw) != rendezvous(raw, pool, self.copies):
                    bucket[key] = value
                    self._pending_size += 1
            for raw in [r for r in saved if r not in live]:
                key = decode(raw)
                if key not in bucket:
                    bucket[key] = _GONE
                    self._pending_size += 1

    async def _ship(self, batch: dict[str, dict[Any, Any]]) -> None:
        pool = self._pool()
        connected = self.grid.remote_peers
        saves: dict[tuple[str, tuple[str, ...]], list[tuple[bytes, bytes, int]]] = {}
        deletes: dict[tuple[str, str], list[bytes]] = {}
        for sid, entries in batch.items():
            source = self._sources.get(sid)
            if source is None:
                continue
            saved = self._saved.setdefault(sid, {})
            ek, ev, stamp = source.key_codec.encode, source.value_codec.encode, source.write_stamp
            for key, value in entries.items():
                raw = ek(key)
                before = saved.get(raw, ())
                targets: tuple[str, ...] = ()
                if value is _GONE or not pool:
                    saved.pop(raw, None)
                else:
                    targets = rendezvous(raw, pool, self.copies)
                    saves.setdefault((sid, targets), []).append((raw, ev(value), stamp(key)))
                for peer in before:
                    if peer not in targets and peer in connected:
                        deletes.setdefault((peer, sid), []).append(raw)
        calls = [self._save(sid, holders, items) for (sid, holders), items in saves.items()]
        calls += [self._delete(peer, sid, keys) for (peer, sid), keys in deletes.items()]
        if calls:
            await gather_limited(calls)

    async def _save(self, sid: str, holders: tuple[str, ...], items: list[tuple[bytes, bytes, int]]) -> None:
        limit = self.grid.config.max_message_keys
        batches = chunks(items, limit)
        acked: list[list[str]] = [[] for _ in batches]

        async def ship(index: int, holder: str) -> None:
            part = batches[index]
            message = Message(MessageType.UPDATE_ENTRIES_REQUEST, storage_id=self.id,
                              keys=[k for k, _, _ in part], values=[v for _, v, _ in part],
                              payload={"s": sid, "h": list(holders), "t": [t for _, _, t in part]})
            if await self.grid.request(message, (holder,)):
                acked[index].append(holder)
            else:
                self._metrics.unacked.labels(self.id).inc()
                if holder in self.grid.remote_peers:
                    # no backups endpoint there, or too slow: choose other holders until it rejoins
                    self._unavailable.add(holder)
                    self._reconcile_needed = True

        await gather_limited([ship(i, h) for i in range(len(batches)) for h in holders])
        saved = self._saved.setdefault(sid, {})
        for part, holders_acked in zip(batches, acked, strict=True):
            kept = tuple(h for h in holders if h in holders_acked)
            for raw, _, _ in part:
                if kept:
                    saved[raw] = kept
                else:
                    saved.pop(raw, None)

    async def _delete(self, peer: str, sid: str, keys: list[bytes]) -> None:
        limit = self.grid.config.max_message_keys
        await gather_limited([
            self.grid.request(Message(MessageType.DELETE_ENTRIES_REQUEST, storage_id=self.id,
                                      keys=list(part), payload={"s": sid}), (peer,))
            for part in chunks(keys, limit)
        ])

    # ------------------------------------------------------------------ membership
    def _on_peer_joined(self, peer: str) -> None:
        self._unavailable.discard(peer)
        # the owner is back with its entries: mirrors of it we were waiting on are moot
        self._drop_orphans(self._orphans.pop(peer, {}))
        self._request_reconcile()

    def _on_peer_detached(self, peer: str) -> None:
        self._unavailable.discard(peer)
        mirrors = self._stored.pop(peer, None)
        if mirrors:
            self._orphans.setdefault(peer, {}).update(mirrors)
        if self._orphans:
            self._restore_orphans()
        self._request_reconcile()

    def _first_alive(self, mirror: _Mirror) -> str:
        local = self.grid.local_id
        alive = self.grid.remote_peers
        return next((h for h in mirror.holders if h == local or h in alive), local)

    def _restore_orphans(self) -> None:
        """Restore the mirrors of lost owners for which this node is the first holder still
        connected. The others wait (as orphans) until their restorer confirms it mirrored
        them again, or is lost too, which makes the next holder in line restore them."""
        local = self.grid.local_id
        for owner in list(self._orphans):
            mirrors = self._orphans[owner]
            ours = {key: m for key, m in mirrors.items() if self._first_alive(m) == local}
            for key in ours:
                del mirrors[key]
            if not mirrors:
                del self._orphans[owner]
            if ours:
                self._drop_orphans(ours)
                self._restore(owner, ours)
                self._confirm.add(owner)

    def _drop_orphans(self, mirrors: dict[tuple[str, bytes], _Mirror]) -> None:
        self._stored_bytes -= sum(len(m.value) for m in mirrors.values())

    def _restore(self, owner: str, mirrors: dict[tuple[str, bytes], _Mirror]) -> None:
        ours: dict[str, dict[bytes, _Mirror]] = {}
        for (sid, raw), mirror in mirrors.items():
            ours.setdefault(sid, {})[raw] = mirror
        for sid, entries in ours.items():
            source = self._sources.get(sid)
            if source is None:
                self._metrics.dropped.labels(self.id, "unknown storage").inc(len(entries))
                logger.warning("backups %s: %d entries of lost peer %s belong to storage %s, which is not "
                               "attached here; dropped", self.id, len(entries), owner, sid)
                continue
            dk, dv = source.key_codec.decode, source.value_codec.decode
            decoded: dict[Any, tuple[Any, int]] = {}
            for raw, mirror in entries.items():
                try:
                    decoded[dk(raw)] = (dv(mirror.value), mirror.stamp)
                except Exception:
                    self._metrics.dropped.labels(self.id, "undecodable").inc()
            restored = source.restore_from_backup(decoded)
            self._metrics.restored.labels(self.id).inc(len(restored))
            conflicts = len(decoded) - len(restored)
            if conflicts:
                self._metrics.restore_conflicts.labels(self.id).inc(conflicts)
            logger.info("backups %s: restored %d entries of lost peer %s into %s (%d already present)",
                        self.id, len(restored), owner, sid, conflicts)

    def _send_confirmations(self) -> None:
        """Tell the other holders that the entries of these lost owners we restored are
        mirrored again: they can drop the copies they kept in case we were lost too."""
        owners, self._confirm = self._confirm, set()
        for owner in sorted(owners):
            self.grid.notify(Message(MessageType.EVICT_ENTRIES_NOTIFICATION, storage_id=self.id,
                                     payload={"owner": owner}))

    def _on_confirmation(self, message: Message) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        owner = payload.get("owner")
        if not isinstance(owner, str):
            self._metrics.dropped.labels(self.id, "malformed").inc()
            return
        mirrors = self._orphans.get(owner)
        if not mirrors:
            return
        settled = {key: m for key, m in mirrors.items() if self._first_alive(m) == message.source}
        for key in settled:
            del mirrors[key]
        self._drop_orphans(settled)
        if not mirrors:
            del self._orphans[owner]

    # ------------------------------------------------------------------ holder side
    async def on_request(self, message: Message) -> Message | None:
        if self._closed:
            return message.response()
        if message.type == MessageType.UPDATE_ENTRIES_REQUEST:
            return self._on_save(message)
        if message.type == MessageType.DELETE_ENTRIES_REQUEST:
            return self._on_delete(message)
        logger.debug("backups %s ignores %s", self.id, message.type.name)
        return message.response()

    def on_notification(self, message: Message) -> None:
        if message.type == MessageType.EVICT_ENTRIES_NOTIFICATION and not self._closed:
            self._on_confirmation(message)
        else:
            logger.debug("backups %s ignores %s", self.id, message.type.name)

    def _on_save(self, message: Message) -> Message:
        payload = message.payload if isinstance(message.payload, dict) else {}
        sid, holders, stamps = payload.get("s"), payload.get("h"), payload.get("t")
        count = len(message.keys)
        if not (isinstance(sid, str) and isinstance(holders, list)
                and all(isinstance(h, str) for h in holders) and isinstance(stamps, list)
                and len(stamps) == count == len(message.values) and all(isinstance(t, int) for t in stamps)):
            self._metrics.dropped.labels(self.id, "malformed").inc(count)
            logger.warning("backups %s: malformed mirror batch from %s (fields s, h, t); dropped %d entries",
                           self.id, message.source, count)
            return message.response(payload=0)
        bucket = self._stored.setdefault(message.source, {})
        order = tuple(holders)
        for raw, value, stamp in zip(message.keys, message.values, stamps, strict=True):
            previous = bucket.get((sid, raw))
            if previous is not None:
                self._stored_bytes -= len(previous.value)
            bucket[(sid, raw)] = _Mirror(value, stamp, order)
            self._stored_bytes += len(value)
        return message.response(payload=count)

    def _on_delete(self, message: Message) -> Message:
        payload = message.payload if isinstance(message.payload, dict) else {}
        sid = payload.get("s")
        bucket = self._stored.get(message.source)
        removed: list[bytes] = []
        if isinstance(sid, str) and bucket is not None:
            for raw in message.keys:
                mirror = bucket.pop((sid, raw), None)
                if mirror is not None:
                    self._stored_bytes -= len(mirror.value)
                    removed.append(raw)
            if not bucket:
                del self._stored[message.source]
        return message.response(keys=removed)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for unsubscribe in self._grid_unsubscribe:
            with contextlib.suppress(ValueError):
                unsubscribe()
        for unsubscribe in self._source_unsubscribe.values():
            unsubscribe()
        self._source_unsubscribe.clear()
        self._sources.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.grid.unregister_storage(self.id)
        for gauge in (self._metrics.saved, self._metrics.stored, self._metrics.stored_bytes,
                      self._metrics.pending):
            with contextlib.suppress(KeyError):
                gauge.remove(self.id)
