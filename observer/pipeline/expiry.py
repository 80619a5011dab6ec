"""Idle expiry, decided by the Raft leader for the whole grid (spec/observer.md §3.3, §3.4).

The reference let every daemon clean the entries it owned, without a leader: a daemon that died
took its entities with it and nobody ever emitted their LEFT/ENDED events (BUG 15), SFU entities
were wiped every few minutes because their touch times were seconds (BUG 5), expired outbound
pads were deleted through the inbound-pad repository (BUG 6), and children that expired on their
own stayed listed in their parents (BUG 7).

Here one task per daemon wakes every ``interval_s`` and, on the leader only, runs a pass:

1. read every storage, children before parents (so a child whose parent is missing from the later
   parent snapshot really lost its parent: the pipeline writes parents first);
2. an entity is dead when it was not touched for its max idle time, or its parent is dead or
   missing (or is another incarnation: a client now in another call, ...). Cascades follow:
   call -> clients -> PCs -> tracks -> SFU media streams/sinks and the SSRC index;
   sfu -> transports -> pads/channels -> the internal pad index;
3. delete the dead entities' lifecycle journal entries (one replicated delete), then the entities,
   roots first (a pipeline that then misses the call defers its samples rather than touching
   half-deleted state), and release the rooms of the ended calls, so the next sample of such a room
   starts a new call (BUG 1); a track's index entries, stream and sink go just before the track;
4. emit the closing events of exactly the entities this pass removed: the ones whose journal entry
   this pass's delete removed (replicated, so two leaders, an old one finishing its pass and the
   new one, never both get an entry), or, for an entity without an entry, whose own delete did.

Lost entities: a call, client, PC or client track in the lifecycle journal but missing from its
storage lost its daemon (no backups; or not restored yet). It is judged like a stored one touched
when this leader first found it missing: it keeps its children alive while it waits, and when its
idle time is over it is ended like the others, closing event once. A daemon that sees it again
before that re-creates it from the journal (``calls``, ``call_entities``). Finding them means
reading the whole journal, which a pass does only when entities may be lost (see ``_review``); in
the other passes the journal is read for the dead entities only (a local read).

A room whose call is missing in two passes in a row is released too (a leader that died in the
middle of a pass, or a daemon that won a room and died before creating its call); a call that is
lost but still waiting in the journal keeps its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from prometheus_client import CollectorRegistry

from observer.pipeline.bulk import delete_all, get_all
from observer.pipeline.lifecycle import (
    call_ended,
    closing_event,
    rtp_pad_event,
    sctp_channel_event,
    sfu_lifecycle_event,
    transport_event,
)
from observer.pipeline.metrics import RepositoryMetrics
from observer.pipeline.settings import PipelineSettings
from observer.reports.model import Report
from observer.repositories import (
    KINDS,
    Call,
    Client,
    JournalEntity,
    JournalEntry,
    JournalKey,
    PeerConnection,
    Repositories,
    call_key,
    created_at,
    grid_key,
    journal_key,
    replace,
)
from observer.repositories.journal import (
    CALL,
    CLIENT,
    INBOUND_TRACK,
    OUTBOUND_TRACK,
    PEER_CONNECTION,
    STORAGE_OF,
    is_incarnation,
    stored_key,
)

log = logging.getLogger(__name__)
K = TypeVar("K")

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 10.0
# non-leaders refresh the entries gauge from the storages' sizes this often
_GAUGE_REFRESH_S = 30.0
_YIELD_EVERY = 2000
# the journal is compared with the storages at least every this many passes (see Expirer._review)
_REVIEW_EVERY = 10


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _snapshot(storage: Any) -> dict[Any, Any]:
    entries: dict[Any, Any] = {}
    async for key, value in storage.items():
        entries[key] = value
        if len(entries) % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # local reads never suspend: let the pipeline and the sockets run
    return entries


@attrs.define(eq=False)
class _Judgement:
    """What a pass decided about the call side: the dead stored entities by storage name and key, the
    dead lost ones by journal kind and key."""

    dead: dict[str, dict[str, Any]]
    dead_lost: dict[str, dict[JournalKey, JournalEntity]]
    room_calls: set[str]  # stored or lost: their rooms are not orphans
    orphaned: bool  # a stored entity lost its parent: the parent may be waiting in the journal


class Expirer:
    def __init__(
        self,
        repositories: Repositories,
        settings: PipelineSettings,
        is_leader: Callable[[], bool],
        emit: Callable[[list[Report]], None],
        *,
        clock: Callable[[], int] = _now_ms,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.repositories = repositories
        self.settings = settings
        self._is_leader = is_leader
        self._emit = emit
        self._clock = clock
        self.metrics = RepositoryMetrics(registry)
        self._orphan_rooms: dict[str, str] = {}  # room key -> the missing callId, seen in the last pass
        # lost entities: since when this leader has found them missing (forgotten when it stops
        # leading: the next leader gives them the whole idle time again)
        self._missing_since: dict[JournalKey, int] = {}
        self._passes_to_review = 0  # passes until the journal is compared with the storages anyway
        # incarnations this leader ended: journal key -> (created, ended at)
        self._ended: dict[JournalKey, tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_gauge_refresh = 0.0

    @property
    def interval_s(self) -> float:
        return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, self.settings.max_idle.shortest_s() / 4))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="observer-expirer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception:
                log.exception("expiry pass failed; retried in %.1f s", self.interval_s)
                self.metrics.passes.labels("false").inc()

    async def run_once(self) -> list[Report]:
        """One pass if this daemon is the leader (else nothing); returns the emitted reports."""
        if not self._is_leader():
            self._orphan_rooms.clear()
            self._missing_since.clear()
            self._passes_to_review = 0
            await self._refresh_gauges()
            return []
        started = time.perf_counter()
        reports = await self._pass(self._clock())
        self.metrics.passes.labels("true").inc()
        self.metrics.pass_seconds.observe(time.perf_counter() - started)
        if reports:
            self._emit(reports)
        return reports

    async def _refresh_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauge_refresh < _GAUGE_REFRESH_S:
            return
        self._last_gauge_refresh = now
        for name, storage in self.repositories.items():
            try:
                self.metrics.entries.labels(KINDS[name].storage_id).set(await storage.size())
            except Exception as exc:  # a gauge is not worth a failed pass
                log.debug("size of %s failed: %s", name, exc)

    async def _pass(self, now: int) -> list[Report]:
        repos = self.repositories
        idle = self.settings.max_idle
        snapshots: dict[str, dict[str, Any]] = {}
        # children before parents (see the module docstring)
        for name in ("outbound_track_ssrcs", "sfu_media_streams", "sfu_media_sinks", "inbound_tracks",
                     "outbound_tracks", "peer_connections", "clients", "calls",
                     "sfu_internal_outbound_pads", "sfu_inbound_rtp_pads", "sfu_outbound_rtp_pads",
                     "sfu_sctp_channels", "sfu_transports", "sfus"):
            snapshots[name] = await _snapshot(getattr(repos, name))
        for name, entries in snapshots.items():
            self.metrics.entries.labels(KINDS[name].storage_id).set(len(entries))
        # the journal after the storages: an entity created meanwhile is then at worst journaled
        # and not seen yet (waiting), never seen and not journaled
        journal_size = await repos.journal.size()
        self.metrics.entries.labels(KINDS["journal"].storage_id).set(journal_size)
        self._passes_to_review -= 1
        journal: dict[JournalKey, JournalEntry] | None = None
        lost: dict[str, dict[JournalKey, JournalEntity]] = {kind: {} for kind in STORAGE_OF}
        if (self._passes_to_review <= 0 or self._missing_since
                or journal_size > sum(len(snapshots[name]) for name in STORAGE_OF.values())):
            journal, lost = await self._review(snapshots, now)
        judged = self._judge(snapshots, lost, now)
        if judged.orphaned and journal is None:
            journal, lost = await self._review(snapshots, now)
            judged = self._judge(snapshots, lost, now)
        dead, dead_lost = judged.dead, judged.dead_lost

        sfus = snapshots["sfus"]
        dead_sfus = {k: s for k, s in sfus.items() if _idle(s, idle.sfu_s, now)}
        transports, dead_transports = _split(snapshots["sfu_transports"], lambda t: (
            _idle(t, idle.sfu_transport_s, now) or t.sfu_id not in sfus or t.sfu_id in dead_sfus))
        _, dead_in_pads = _split(snapshots["sfu_inbound_rtp_pads"], lambda p: (
            _idle(p, idle.sfu_inbound_rtp_pad_s, now) or _other_sfu_parent(transports.get(p.transport_id), p)))
        out_pads, dead_out_pads = _split(snapshots["sfu_outbound_rtp_pads"], lambda p: (
            _idle(p, idle.sfu_outbound_rtp_pad_s, now) or _other_sfu_parent(transports.get(p.transport_id), p)))
        _, dead_channels = _split(snapshots["sfu_sctp_channels"], lambda c: (
            _idle(c, idle.sfu_sctp_channel_s, now) or _other_sfu_parent(transports.get(c.transport_id), c)))
        _, dead_pad_index = _split(snapshots["sfu_internal_outbound_pads"], lambda ref: ref.pad_id not in out_pads)

        # the journal first, in one replicated delete: whoever's delete removes an entry emits its
        # closing event, so an old leader still finishing a pass cannot double it
        dead_keys = {journal_key(e) for name in STORAGE_OF.values() for e in dead[name].values()}
        if journal is None:
            journal = await get_all(repos.journal, dead_keys)  # a local read
        dead_entries = {key for key in dead_keys if key in journal}
        for part in dead_lost.values():
            dead_entries.update(part)
        ended_entries = await self._delete("journal", dead_entries)

        # then the storages, roots first; a lost entity is deleted too in case it was re-created
        # from its journal entry meanwhile (unless its key holds another incarnation)
        deleted: dict[str, set[str]] = {}

        async def delete(kind: str) -> None:
            name = STORAGE_OF[kind]
            deleted[name] = await self._delete(name, {**_absent(dead_lost[kind], snapshots[name]), **dead[name]})

        await delete(CALL)
        ended_calls: list[Call] = []
        released: set[str] = set()
        for call, was_lost in (*((c, False) for c in dead["calls"].values()),
                               *((c, True) for c in dead_lost[CALL].values())):
            removed, due = self._closed(call, journal, ended_entries, deleted["calls"], now, was_lost)
            if removed:
                released.add(call.call_id)
            if due:
                ended_calls.append(call)
        await self._release_rooms(judged.room_calls, released)
        await delete(CLIENT)
        await delete(PEER_CONNECTION)
        # what a track wrote beside itself goes before the track: the pipeline writes it only when
        # it creates the track, so a track re-created meanwhile writes it again
        for name in ("sfu_media_streams", "sfu_media_sinks", "outbound_track_ssrcs"):
            await self._delete(name, dead[name])
        await delete(INBOUND_TRACK)
        await delete(OUTBOUND_TRACK)
        deleted_sfus = await self._delete("sfus", dead_sfus)
        deleted_transports = await self._delete("sfu_transports", dead_transports)
        await self._delete("sfu_internal_outbound_pads", dead_pad_index)
        deleted_in_pads = await self._delete("sfu_inbound_rtp_pads", dead_in_pads)
        deleted_out_pads = await self._delete("sfu_outbound_rtp_pads", dead_out_pads)
        deleted_channels = await self._delete("sfu_sctp_channels", dead_channels)

        # closing events, children first
        reports: list[Report] = []
        for kind in (INBOUND_TRACK, OUTBOUND_TRACK, PEER_CONNECTION, CLIENT):
            name = STORAGE_OF[kind]
            for entity, was_lost in (*((e, False) for e in dead[name].values()),
                                     *((e, True) for e in dead_lost[kind].values())):
                if self._closed(entity, journal, ended_entries, deleted[name], now, was_lost)[1]:
                    reports.append(closing_event(entity, now))
        for gone, dying, event in (
            (deleted_in_pads, dead_in_pads, rtp_pad_event),
            (deleted_out_pads, dead_out_pads, rtp_pad_event),
            (deleted_channels, dead_channels, sctp_channel_event),
            (deleted_transports, dead_transports, transport_event),
            (deleted_sfus, dead_sfus, sfu_lifecycle_event),
        ):
            reports.extend(event(dying[key], opened=False, now=now) for key in dying if key in gone)
        reports.extend(call_ended(call, now) for call in ended_calls)
        return reports

    def _judge(self, snapshots: dict[str, dict[str, Any]], lost: dict[str, dict[JournalKey, JournalEntity]],
               now: int) -> _Judgement:
        """Which call-side entities are dead: idle, or their parent is dead, missing or another
        incarnation. A lost entity still waiting counts as a live parent."""
        idle = self.settings.max_idle
        orphaned = False
        calls = snapshots["calls"]
        dead_calls = {k: c for k, c in calls.items() if _idle(c, idle.call_s, now)}
        lost_calls, dead_lost_calls = _split(lost[CALL], lambda c: _idle(c, idle.call_s, now))
        live_calls = (calls.keys() - dead_calls.keys()) | {c.call_id for c in lost_calls.values()}

        def client_dead(c: Client) -> bool:
            nonlocal orphaned
            if _idle(c, idle.client_s, now):
                return True
            if c.call_id in live_calls:
                return False
            orphaned = orphaned or c.call_id not in calls
            return True

        clients, dead_clients = _split(snapshots["clients"], client_dead)
        lost_clients, dead_lost_clients = _split(lost[CLIENT], client_dead)
        waiting_clients = {(c.call_id, c.client_id) for c in lost_clients.values()}
        stored_clients = snapshots["clients"]

        def pc_dead(p: PeerConnection) -> bool:
            nonlocal orphaned
            if _idle(p, idle.peer_connection_s, now):
                return True
            parent = clients.get(p.client_id)
            if parent is not None and parent.call_id == p.call_id:
                return False
            if waiting_clients and (p.call_id, p.client_id) in waiting_clients:
                return False
            stored = stored_clients.get(p.client_id)
            orphaned = orphaned or stored is None or stored.call_id != p.call_id
            return True

        pcs, dead_pcs = _split(snapshots["peer_connections"], pc_dead)
        lost_pcs, dead_lost_pcs = _split(lost[PEER_CONNECTION], pc_dead)
        waiting_pcs = {(p.call_id, p.client_id, p.peer_connection_id) for p in lost_pcs.values()}
        stored_pcs = snapshots["peer_connections"]

        def track_dead(limit_s: int) -> Callable[[Any], bool]:
            def dead(t: Any) -> bool:
                nonlocal orphaned
                if _idle(t, limit_s, now):
                    return True
                parent = pcs.get(t.peer_connection_id)
                if parent is not None and parent.call_id == t.call_id and parent.client_id == t.client_id:
                    return False
                if waiting_pcs and (t.call_id, t.client_id, t.peer_connection_id) in waiting_pcs:
                    return False
                stored = stored_pcs.get(t.peer_connection_id)
                orphaned = orphaned or stored is None or stored.call_id != t.call_id
                return True
            return dead

        inbound, dead_inbound = _split(snapshots["inbound_tracks"], track_dead(idle.inbound_track_s))
        lost_inbound, dead_lost_inbound = _split(lost[INBOUND_TRACK], track_dead(idle.inbound_track_s))
        outbound, dead_outbound = _split(snapshots["outbound_tracks"], track_dead(idle.outbound_track_s))
        lost_outbound, dead_lost_outbound = _split(lost[OUTBOUND_TRACK], track_dead(idle.outbound_track_s))
        # a lost track still waiting for its client keeps what it wrote beside itself
        if lost_inbound:
            inbound = {**{t.track_id: t for t in lost_inbound.values()}, **inbound}
        if lost_outbound:
            outbound = {**{t.track_id: t for t in lost_outbound.values()}, **outbound}
        _, dead_streams = _split(snapshots["sfu_media_streams"], lambda s: (
            (t := outbound.get(s.track.track_id)) is None or t.sfu_stream_id != s.sfu_stream_id))
        _, dead_sinks = _split(snapshots["sfu_media_sinks"], lambda s: (
            (t := inbound.get(s.track.track_id)) is None or t.sfu_sink_id != s.sfu_sink_id))
        _, dead_ssrcs = _split(snapshots["outbound_track_ssrcs"], lambda ref: (
            (t := outbound.get(ref.track_id)) is None or t.call_id != ref.call_id))
        return _Judgement(
            dead={"calls": dead_calls, "clients": dead_clients, "peer_connections": dead_pcs,
                  "inbound_tracks": dead_inbound, "outbound_tracks": dead_outbound,
                  "sfu_media_streams": dead_streams, "sfu_media_sinks": dead_sinks, "outbound_track_ssrcs": dead_ssrcs},
            dead_lost={CALL: dead_lost_calls, CLIENT: dead_lost_clients, PEER_CONNECTION: dead_lost_pcs,
                       INBOUND_TRACK: dead_lost_inbound, OUTBOUND_TRACK: dead_lost_outbound},
            room_calls=calls.keys() | {c.call_id for c in lost[CALL].values()},
            orphaned=orphaned,
        )

    async def _review(self, snapshots: dict[str, dict[str, Any]], now: int
                      ) -> tuple[dict[JournalKey, JournalEntry], dict[str, dict[JournalKey, JournalEntity]]]:
        """Compare the whole journal with the storages: the incarnations missing from them lost their
        daemon (no backups, or not restored yet). Done when entities may be lost (the journal holds
        more than the storages, a stored entity lost its parent, entities were lost in the last
        pass, a new leader) and every few passes anyway; it reads every journal entry.

        A lost entity is judged as touched when this leader first found it missing: its clients get
        the whole idle time to come back through another daemon (one whose daemon died with the
        previous leader gets it from when this leader took over), and its closing event carries
        that time (the leader cannot know the samples its daemon saw last)."""
        self._passes_to_review = _REVIEW_EVERY
        journal: dict[JournalKey, JournalEntry] = await _snapshot(self.repositories.journal)
        stored = {kind: snapshots[name] for kind, name in STORAGE_OF.items()}
        previous, since = self._missing_since, {}
        lost: dict[str, dict[JournalKey, JournalEntity]] = {kind: {} for kind in STORAGE_OF}
        for key, entry in journal.items():
            if _stored_copy(stored, key) is not None:
                continue
            entity = entry.entity
            missing = since[key] = previous.get(key, now)
            if not isinstance(entity, Call):
                entity = replace(entity, sample_touched=max(entity.sample_touched, missing))
            lost[key[0]][key] = replace(entity, server_touched=max(entity.server_touched, missing))
        self._missing_since = since
        # an ended incarnation is remembered while a copy of it is around, and for the longest idle
        # time after (a journal write in flight when it ended lands within a request timeout)
        horizon = now - 1000 * max(attrs.astuple(self.settings.max_idle))
        for key, (_, ended_at) in list(self._ended.items()):
            if ended_at < horizon and key not in journal and _stored_copy(stored, key) is None:
                del self._ended[key]
        return journal, lost

    def _closed(self, entity: JournalEntity, journal: dict[JournalKey, JournalEntry], ended_entries: set[Any],
                deleted: set[str], now: int, lost: bool) -> tuple[bool, bool]:
        """Whether this pass removed the entity, and whether its closing event is due. Removed: its
        journal entry was deleted by this pass (the storage's delete, for one without an entry).
        Due: removed, and not an incarnation this leader has ended already (a copy that outlived its
        end: re-created from a journal entry written late, or whose storage delete failed)."""
        key = journal_key(entity)
        removed = key in ended_entries if key in journal else grid_key(entity) in deleted
        if not removed:
            return False, False
        self._missing_since.pop(key, None)
        created = created_at(entity)
        ended = self._ended.get(key)
        if ended is not None and ended[0] == created:
            return True, False
        self._ended[key] = (created, now)
        if lost:
            self.metrics.lost_ended.labels(key[0]).inc()
        return True, True

    async def _delete(self, name: str, dead: Any) -> set[Any]:
        if not dead:
            return set()
        deleted = await delete_all(getattr(self.repositories, name), dead)
        if deleted:
            self.metrics.expired.labels(KINDS[name].storage_id).inc(len(deleted))
        return deleted

    async def _release_rooms(self, calls: set[str], ended: set[str]) -> None:
        """Delete the rooms of the ended calls, and rooms whose call (stored or waiting in the
        journal: ``calls``) has been missing for two passes. Rooms are read after the calls were
        deleted; the replicated rooms storage is current on the leader."""
        rooms = await _snapshot(self.repositories.rooms)
        release = {key for key, room in rooms.items() if room.call_id in ended}
        candidates = {key: room.call_id for key, room in rooms.items()
                      if key not in release and room.call_id not in calls}
        if candidates:
            # a call in the journal lost its daemon: it keeps its room (the next pass reviews it)
            journaled = await get_all(self.repositories.journal, {call_key(c) for c in candidates.values()})
            if journaled:
                self._passes_to_review = 0
                candidates = {key: c for key, c in candidates.items() if call_key(c) not in journaled}
        orphans: dict[str, str] = {}
        for key, call_id in candidates.items():
            if self._orphan_rooms.get(key) == call_id:
                release.add(key)
            else:
                orphans[key] = call_id
        self._orphan_rooms = orphans
        if release:
            deleted = await self.repositories.rooms.delete_all(release)
            if deleted:
                self.metrics.expired.labels(KINDS["rooms"].storage_id).inc(len(deleted))


def _idle(entity: Any, limit_s: int, now: int) -> bool:
    return bool(entity.server_touched < now - limit_s * 1000)


def _split(entries: dict[K, Any], is_dead: Callable[[Any], bool]) -> tuple[dict[K, Any], dict[K, Any]]:
    live: dict[K, Any] = {}
    dead: dict[K, Any] = {}
    for key, entity in entries.items():
        (dead if is_dead(entity) else live)[key] = entity
    return live, dead


def _stored_copy(stored: dict[str, dict[str, Any]], key: JournalKey) -> Any:
    """The stored entity of this incarnation, if any."""
    entity = stored[key[0]].get(stored_key(key))
    return entity if entity is not None and is_incarnation(key, entity) else None


def _absent(lost: dict[JournalKey, JournalEntity], stored: dict[str, Any]) -> dict[str, JournalEntity]:
    """The lost entities by their storage key, leaving out keys that hold another incarnation."""
    return {key: entity for entity in lost.values() if (key := grid_key(entity)) not in stored}


def _other_sfu_parent(transport: Any, child: Any) -> bool:
    return transport is None or transport.sfu_id != child.sfu_id
