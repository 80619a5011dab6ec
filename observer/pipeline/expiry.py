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
3. delete roots first (a pipeline that then misses the call defers its samples rather than
   touching half-deleted state) and release the rooms of the ended calls, so the next sample of
   such a room starts a new call (BUG 1); a track's index entries, stream and sink go just before
   the track itself;
4. emit the closing events of exactly the entities this pass's ``delete_all`` calls removed.

A room whose call is missing in two passes in a row is released too (a leader that died in the
middle of a pass, or a daemon that won a room and died before creating its call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from observer.pipeline.bulk import delete_all
from observer.pipeline.lifecycle import (
    call_ended,
    client_event,
    peer_connection_event,
    rtp_pad_event,
    sctp_channel_event,
    sfu_lifecycle_event,
    track_event,
    transport_event,
)
from observer.pipeline.metrics import RepositoryMetrics
from observer.pipeline.settings import PipelineSettings
from observer.reports.model import Report
from observer.repositories import KINDS, Repositories

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 10.0
# non-leaders refresh the entries gauge from the storages' sizes this often
_GAUGE_REFRESH_S = 30.0
_YIELD_EVERY = 2000


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _snapshot(storage: Any) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    async for key, value in storage.items():
        entries[key] = value
        if len(entries) % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # local reads never suspend: let the pipeline and the sockets run
    return entries


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

        def idle_past(entity: Any, limit_s: int) -> bool:
            return bool(entity.server_touched < now - limit_s * 1000)

        calls = snapshots["calls"]
        dead_calls = {k: c for k, c in calls.items() if idle_past(c, idle.call_s)}
        live_calls = calls.keys() - dead_calls.keys()
        clients, dead_clients = _split(snapshots["clients"], lambda c: (
            idle_past(c, idle.client_s) or c.call_id not in live_calls))
        pcs, dead_pcs = _split(snapshots["peer_connections"], lambda p: (
            idle_past(p, idle.peer_connection_s) or _other_parent(clients.get(p.client_id), p.call_id)))
        inbound, dead_inbound = _split(snapshots["inbound_tracks"], lambda t: (
            idle_past(t, idle.inbound_track_s) or _other_track_parent(pcs.get(t.peer_connection_id), t)))
        outbound, dead_outbound = _split(snapshots["outbound_tracks"], lambda t: (
            idle_past(t, idle.outbound_track_s) or _other_track_parent(pcs.get(t.peer_connection_id), t)))
        _, dead_streams = _split(snapshots["sfu_media_streams"], lambda s: (
            (t := outbound.get(s.track.track_id)) is None or t.sfu_stream_id != s.sfu_stream_id))
        _, dead_sinks = _split(snapshots["sfu_media_sinks"], lambda s: (
            (t := inbound.get(s.track.track_id)) is None or t.sfu_sink_id != s.sfu_sink_id))
        _, dead_ssrcs = _split(snapshots["outbound_track_ssrcs"], lambda ref: (
            (t := outbound.get(ref.track_id)) is None or t.call_id != ref.call_id))

        sfus = snapshots["sfus"]
        dead_sfus = {k: s for k, s in sfus.items() if idle_past(s, idle.sfu_s)}
        transports, dead_transports = _split(snapshots["sfu_transports"], lambda t: (
            idle_past(t, idle.sfu_transport_s) or t.sfu_id not in sfus or t.sfu_id in dead_sfus))
        _, dead_in_pads = _split(snapshots["sfu_inbound_rtp_pads"], lambda p: (
            idle_past(p, idle.sfu_inbound_rtp_pad_s) or _other_sfu_parent(transports.get(p.transport_id), p)))
        out_pads, dead_out_pads = _split(snapshots["sfu_outbound_rtp_pads"], lambda p: (
            idle_past(p, idle.sfu_outbound_rtp_pad_s) or _other_sfu_parent(transports.get(p.transport_id), p)))
        _, dead_channels = _split(snapshots["sfu_sctp_channels"], lambda c: (
            idle_past(c, idle.sfu_sctp_channel_s) or _other_sfu_parent(transports.get(c.transport_id), c)))
        _, dead_pad_index = _split(snapshots["sfu_internal_outbound_pads"], lambda ref: ref.pad_id not in out_pads)

        # roots first
        deleted_calls = await self._delete("calls", dead_calls)
        await self._release_rooms(calls, deleted_calls)
        deleted_clients = await self._delete("clients", dead_clients)
        deleted_pcs = await self._delete("peer_connections", dead_pcs)
        # what a track wrote beside itself goes before the track: the pipeline writes it only when
        # it creates the track, so a track re-created meanwhile writes it again
        await self._delete("sfu_media_streams", dead_streams)
        await self._delete("sfu_media_sinks", dead_sinks)
        await self._delete("outbound_track_ssrcs", dead_ssrcs)
        deleted_inbound = await self._delete("inbound_tracks", dead_inbound)
        deleted_outbound = await self._delete("outbound_tracks", dead_outbound)
        deleted_sfus = await self._delete("sfus", dead_sfus)
        deleted_transports = await self._delete("sfu_transports", dead_transports)
        await self._delete("sfu_internal_outbound_pads", dead_pad_index)
        deleted_in_pads = await self._delete("sfu_inbound_rtp_pads", dead_in_pads)
        deleted_out_pads = await self._delete("sfu_outbound_rtp_pads", dead_out_pads)
        deleted_channels = await self._delete("sfu_sctp_channels", dead_channels)

        # closing events, children first
        reports: list[Report] = []
        for deleted, dead, event in (
            (deleted_inbound, dead_inbound, track_event),
            (deleted_outbound, dead_outbound, track_event),
            (deleted_pcs, dead_pcs, peer_connection_event),
            (deleted_clients, dead_clients, client_event),
            (deleted_in_pads, dead_in_pads, rtp_pad_event),
            (deleted_out_pads, dead_out_pads, rtp_pad_event),
            (deleted_channels, dead_channels, sctp_channel_event),
            (deleted_transports, dead_transports, transport_event),
            (deleted_sfus, dead_sfus, sfu_lifecycle_event),
        ):
            reports.extend(event(dead[key], opened=False, now=now) for key in dead if key in deleted)
        reports.extend(call_ended(dead_calls[key], now) for key in dead_calls if key in deleted_calls)
        return reports

    async def _delete(self, name: str, dead: dict[str, Any]) -> set[str]:
        if not dead:
            return set()
        deleted = await delete_all(getattr(self.repositories, name), dead)
        if deleted:
            self.metrics.expired.labels(KINDS[name].storage_id).inc(len(deleted))
        return deleted

    async def _release_rooms(self, calls: dict[str, Any], ended: set[str]) -> None:
        """Delete the rooms of the ended calls, and rooms whose call has been missing for two
        passes. Rooms are read after the calls were deleted; the replicated rooms storage is
        current on the leader."""
        rooms = await _snapshot(self.repositories.rooms)
        release = {key for key, room in rooms.items() if room.call_id in ended}
        orphans: dict[str, str] = {}
        for key, room in rooms.items():
            if key not in release and room.call_id not in calls:
                if self._orphan_rooms.get(key) == room.call_id:
                    release.add(key)
                else:
                    orphans[key] = room.call_id
        self._orphan_rooms = orphans
        if release:
            deleted = await self.repositories.rooms.delete_all(release)
            if deleted:
                self.metrics.expired.labels(KINDS["rooms"].storage_id).inc(len(deleted))


def _split(entries: dict[str, Any], is_dead: Callable[[Any], bool]) -> tuple[dict[str, Any], dict[str, Any]]:
    live: dict[str, Any] = {}
    dead: dict[str, Any] = {}
    for key, entity in entries.items():
        (dead if is_dead(entity) else live)[key] = entity
    return live, dead


def _other_parent(parent: Any, call_id: str) -> bool:
    """The parent is gone, or the key now belongs to another incarnation (another call)."""
    return parent is None or parent.call_id != call_id


def _other_track_parent(pc: Any, track: Any) -> bool:
    return pc is None or pc.call_id != track.call_id or pc.client_id != track.client_id


def _other_sfu_parent(transport: Any, child: Any) -> bool:
    return transport is None or transport.sfu_id != child.sfu_id
