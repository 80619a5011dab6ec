"""Client-side entity updates and track matching for one batch (spec/observer.md §2.2, §6.1, §6.2).

Storage access is batched: one ``get_all`` per entity kind, one ``set_all`` per kind (parents
before children, so the expirer can tell an orphan from an entity whose parent is being
created), plus the index reads that matching needs. An entity is *created* by this batch exactly
when ``set_all`` reports no previous value for its key; only then is its opening event emitted
(exactly once across daemons, see DESIGN principle 6).

An existing client, PC or track found under another call than the one assigned now (the room got
a new call) is removed from the old call (closing event once, see ``lifecycle_journal.end_entities``)
and created again in the new one. One that is missing (its daemon died without backups) but whose
incarnation is in the lifecycle journal is re-created from it, without an opening event; the ones
this batch really created are returned for the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import attrs

from observer.pipeline.batch import ObservedClient, ObservedTrack
from observer.pipeline.bulk import get_all, insert_all, set_all, write_created
from observer.pipeline.lifecycle import client_event, peer_connection_event, track_event
from observer.pipeline.lifecycle_journal import Ending, end_entities, ending_of, lookup
from observer.reports.enrichment import RemoteTrack
from observer.reports.events import time_zone_id
from observer.reports.model import Report
from observer.repositories import (
    Call,
    Client,
    InboundTrack,
    JournalEntity,
    JournalKey,
    OutboundTrack,
    PeerConnection,
    Repositories,
    SfuMediaSink,
    SfuMediaStream,
    TrackRef,
    call_key,
    client_key,
    journal_key,
    peer_connection_key,
    replace,
    ssrc_key,
    touch,
    track_key,
)
from observer.repositories.journal import INBOUND_TRACK, OUTBOUND_TRACK

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class CallEntitiesResult:
    closed: list[Report] = attrs.Factory(list)  # closing events: the replaced calls, entities that moved
    events: list[Report] = attrs.Factory(list)  # opening events
    matches: dict[str, RemoteTrack] = attrs.Factory(dict)  # inbound trackId -> remote outbound track
    created: list[JournalEntity] = attrs.Factory(list)  # clients, PCs and tracks this batch created
    restored: dict[JournalKey, JournalEntity] = attrs.Factory(dict)  # re-created from the journal


async def update_call_entities(
    repos: Repositories,
    tracked: list[tuple[ObservedClient, str]],
    calls: dict[str, Call],
    *,
    now: int,
    match_tracks: bool,
    retired: Mapping[str, Call | None] | None = None,
) -> CallEntitiesResult:
    """``retired``: calls the call assignment replaced (slave mode), ended here with the entities
    that moved to another call."""
    out = CallEntitiesResult()
    retired = retired or {}
    if not tracked and not retired:
        return out
    client_ids = {client.client_id for client, _ in tracked}
    pcs = [pc for client, _ in tracked for pc in client.peer_connections.values()]
    pc_ids = {pc.peer_connection_id for pc in pcs}
    inbound_ids = {track_id for pc in pcs for track_id in pc.inbound}
    outbound_ids = {track_id for pc in pcs for track_id in pc.outbound}
    old_clients, old_pcs, old_inbound, old_outbound = await asyncio.gather(
        get_all(repos.clients, client_ids), get_all(repos.peer_connections, pc_ids),
        get_all(repos.inbound_tracks, inbound_ids), get_all(repos.outbound_tracks, outbound_ids))
    wanted = _journal_keys(tracked, old_clients, old_pcs, old_inbound, old_outbound)
    wanted.update(call_key(call_id) for call_id in retired)
    journaled = await lookup(repos, wanted)

    plan = _Plan(now, journaled)
    for client, call_id in tracked:
        plan.client(client, calls[call_id], old_clients, old_pcs, old_inbound, old_outbound)

    if match_tracks:
        await _match(repos, plan)
        out.matches = {
            track_id: RemoteTrack(ref.client_id, ref.user_id, ref.peer_connection_id, ref.track_id)
            for track_id, track in plan.inbound.items() if (ref := track.remote) is not None
        }

    # entities that moved to another call leave the old one first (and the replaced calls end)
    endings = [ending_of(entity) for moved in (plan.moved_inbound, plan.moved_outbound, plan.moved_pcs,
                                               plan.moved_clients) for entity in moved.values()]
    endings.extend(Ending("calls", call_id, call_key(call_id), call or journaled.get(call_key(call_id)))
                   for call_id, call in retired.items())
    out.closed = await end_entities(repos, endings, journaled, now)

    await _touch_calls(repos, plan.calls)
    for events, created in (
        await write_created(repos.clients.set_all, plan.clients, client_event, now, quiet=plan.quiet_clients),
        await write_created(repos.peer_connections.set_all, plan.pcs, peer_connection_event, now,
                            quiet=plan.quiet_pcs),
        *await asyncio.gather(
            write_created(repos.inbound_tracks.set_all, plan.inbound, track_event, now, quiet=plan.quiet_inbound),
            write_created(repos.outbound_tracks.set_all, plan.outbound, track_event, now,
                          quiet=plan.quiet_outbound)),
    ):
        out.events.extend(events)
        out.created.extend(created)
    out.restored = plan.restored
    await asyncio.gather(
        set_all(repos.sfu_media_streams, plan.streams),
        set_all(repos.sfu_media_sinks, plan.sinks),
        insert_all(repos.outbound_track_ssrcs, plan.ssrc_index))
    return out


async def _touch_calls(repos: Repositories, calls: dict[str, Call]) -> None:
    """Touch the calls; a call the expirer deleted since it was read is deleted again rather than
    kept alive without a room (its CALL_ENDED has been emitted already)."""
    if not calls:
        return
    previous = await repos.calls.set_all(calls)
    resurrected = [call_id for call_id in calls if call_id not in previous]
    if resurrected:
        log.info("calls %s ended while this batch touched them", resurrected)
        await repos.calls.delete_all(resurrected)


def _journal_keys(tracked: list[tuple[ObservedClient, str]], old_clients: dict[str, Client],
                  old_pcs: dict[str, PeerConnection], old_inbound: dict[str, InboundTrack],
                  old_outbound: dict[str, OutboundTrack]) -> set[JournalKey]:
    """The journal entries the batch may need: of every incarnation missing from the storages (to be
    re-created from the journal if it is there), and of every stored one that moves to another call
    (whose journal entry decides who emits its closing event)."""
    keys: set[JournalKey] = set()
    for observed, call_id in tracked:
        client_id = observed.client_id
        old = old_clients.get(client_id)
        if old is None or old.call_id != call_id:
            keys.add(client_key(call_id, client_id))
            if old is not None:
                keys.add(journal_key(old))
        for pc_id, observed_pc in observed.peer_connections.items():
            old_pc = old_pcs.get(pc_id)
            if old_pc is None or old_pc.call_id != call_id or old_pc.client_id != client_id:
                keys.add(peer_connection_key(call_id, client_id, pc_id))
                if old_pc is not None:
                    keys.add(journal_key(old_pc))
            for direction, tracks, olds in ((INBOUND_TRACK, observed_pc.inbound, old_inbound),
                                            (OUTBOUND_TRACK, observed_pc.outbound, old_outbound)):
                for track_id in tracks:
                    old_track = olds.get(track_id)
                    if old_track is None or old_track.call_id != call_id or old_track.peer_connection_id != pc_id:
                        keys.add(track_key(direction, call_id, pc_id, track_id))
                        if old_track is not None:
                            keys.add(journal_key(old_track))
    return keys


class _Plan:
    """The new values of every entity the batch touches, computed from the values read (and from the
    lifecycle journal for the ones their daemon took with it)."""

    def __init__(self, now: int, journaled: Mapping[JournalKey, JournalEntity]) -> None:
        self.now = now
        self.journaled = journaled
        self.restored: dict[JournalKey, JournalEntity] = {}
        self.quiet_clients: set[str] = set()
        self.quiet_pcs: set[str] = set()
        self.quiet_inbound: set[str] = set()
        self.quiet_outbound: set[str] = set()
        self.calls: dict[str, Call] = {}
        self.clients: dict[str, Client] = {}
        self.pcs: dict[str, PeerConnection] = {}
        self.inbound: dict[str, InboundTrack] = {}
        self.outbound: dict[str, OutboundTrack] = {}
        self.moved_clients: dict[str, Client] = {}
        self.moved_pcs: dict[str, PeerConnection] = {}
        self.moved_inbound: dict[str, InboundTrack] = {}
        self.moved_outbound: dict[str, OutboundTrack] = {}
        self.streams: dict[str, SfuMediaStream] = {}
        self.sinks: dict[str, SfuMediaSink] = {}
        self.ssrc_index: dict[str, TrackRef] = {}
        # every outbound track of the batch by index key / sfuStreamId, for same-batch matches
        self.batch_ssrcs: dict[str, TrackRef] = {}
        self.batch_streams: dict[str, TrackRef] = {}

    def client(self, observed: ObservedClient, call: Call, old_clients: dict[str, Client],
               old_pcs: dict[str, PeerConnection], old_inbound: dict[str, InboundTrack],
               old_outbound: dict[str, OutboundTrack]) -> None:
        now = self.now
        call_id = call.call_id
        touched_call = self.calls.get(call_id, call)
        if touched_call.sample_touched is None or touched_call.sample_touched < observed.max_ts:
            touched_call = replace(touched_call, sample_touched=observed.max_ts, server_touched=now)
        elif touched_call.server_touched != now:
            touched_call = replace(touched_call, server_touched=now)
        self.calls[call_id] = touched_call

        client_id = observed.client_id
        old = old_clients.get(client_id)
        if old is not None and old.call_id != call_id:
            self.moved_clients[client_id] = old
            old = None
        if old is None:
            old = self._restore(client_key(call_id, client_id), self.quiet_clients, client_id)
        if old is None:
            client = Client(observed.service_id, observed.room_id, call_id, client_id, observed.min_ts,
                            observed.max_ts, now, observed.media_unit_id, observed.user_id, observed.marker,
                            time_zone_id(observed.time_zone_offset))
        else:
            client = touch(old, observed.max_ts, now)
        self.clients[client_id] = client

        for pc_id, observed_pc in observed.peer_connections.items():
            old_pc = old_pcs.get(pc_id)
            if old_pc is not None and (old_pc.call_id != call_id or old_pc.client_id != client_id):
                self.moved_pcs[pc_id] = old_pc
                old_pc = None
            if old_pc is None:
                old_pc = self._restore(peer_connection_key(call_id, client_id, pc_id), self.quiet_pcs, pc_id)
            if old_pc is None:
                # the PC label is stored (BUG 9 fixed: it was never set)
                self.pcs[pc_id] = PeerConnection(
                    client.service_id, client.room_id, call_id, client_id, pc_id, observed.min_ts,
                    observed.max_ts, now, observed.media_unit_id, client.user_id, observed.marker,
                    observed_pc.label)
            else:
                self.pcs[pc_id] = touch(old_pc, observed.max_ts, now,
                                        label=old_pc.label or observed_pc.label)
            for track in observed_pc.inbound.values():
                self._inbound(track, client, observed, old_inbound.get(track.track_id))
            for track in observed_pc.outbound.values():
                self._outbound(track, client, observed, old_outbound.get(track.track_id))

    def _restore(self, key: JournalKey, quiet: set[str], grid_key: str) -> Any:
        """The journal's entity of this incarnation, to be re-created without an opening event."""
        entity = self.journaled.get(key)
        if entity is not None:
            self.restored[key] = entity
            quiet.add(grid_key)
        return entity

    def _previous(self, track: ObservedTrack, client: Client, old: Any, kind: str, moved: dict[str, Any],
                  quiet: Any) -> tuple[Any, bool]:
        """The stored track to update, or None to create one: a track found under another call or
        peer connection has moved (it is closed and created again); one missing from the grid but
        in the lifecycle journal is restored quietly. Returns (track or None, restored)."""
        if old is not None and (old.call_id != client.call_id or old.peer_connection_id != track.peer_connection_id):
            moved[track.track_id] = old
            old = None
        if old is not None:
            return old, False
        old = self._restore(track_key(kind, client.call_id, track.peer_connection_id, track.track_id), quiet,
                            track.track_id)
        return old, old is not None

    def _inbound(self, track: ObservedTrack, client: Client, observed: ObservedClient,
                 old: InboundTrack | None) -> None:
        now = self.now
        old, restored = self._previous(track, client, old, INBOUND_TRACK, self.moved_inbound, self.quiet_inbound)
        if old is None:
            entity = InboundTrack(
                client.service_id, client.room_id, client.call_id, client.client_id, track.peer_connection_id,
                track.track_id, track.kind, observed.min_ts, observed.max_ts, now, observed.media_unit_id,
                client.user_id, observed.marker, track.sfu_stream_id, track.sfu_sink_id, track.ssrcs)
        else:
            entity = touch(old, observed.max_ts, now,
                           ssrcs=_merged(old.ssrcs, track.ssrcs),
                           sfu_stream_id=old.sfu_stream_id or track.sfu_stream_id,
                           sfu_sink_id=old.sfu_sink_id or track.sfu_sink_id)
        self.inbound[track.track_id] = entity
        # a re-created track writes its sink again (it was likely lost with the track's daemon)
        if entity.sfu_stream_id and entity.sfu_sink_id and (
                old is None or restored or old.sfu_sink_id != entity.sfu_sink_id
                or old.sfu_stream_id != entity.sfu_stream_id):
            self.sinks[entity.sfu_sink_id] = SfuMediaSink(entity.service_id, entity.sfu_stream_id,
                                                          entity.sfu_sink_id, entity.kind, _ref(entity))

    def _outbound(self, track: ObservedTrack, client: Client, observed: ObservedClient,
                  old: OutboundTrack | None) -> None:
        now = self.now
        old, restored = self._previous(track, client, old, OUTBOUND_TRACK, self.moved_outbound,
                                       self.quiet_outbound)
        if old is None:
            entity = OutboundTrack(
                client.service_id, client.room_id, client.call_id, client.client_id, track.peer_connection_id,
                track.track_id, track.kind, observed.min_ts, observed.max_ts, now, observed.media_unit_id,
                client.user_id, observed.marker, track.sfu_stream_id, track.ssrcs)
            known_ssrcs: tuple[int, ...] = ()
        else:
            entity = touch(old, observed.max_ts, now,
                           ssrcs=_merged(old.ssrcs, track.ssrcs),
                           sfu_stream_id=old.sfu_stream_id or track.sfu_stream_id)
            # a re-created track indexes its SSRCs and stream again (likely lost with its daemon)
            known_ssrcs = () if restored else old.ssrcs
        self.outbound[track.track_id] = entity
        ref = _ref(entity)
        for ssrc in entity.ssrcs:
            key = ssrc_key(entity.call_id, ssrc)
            self.batch_ssrcs[key] = ref
            if ssrc not in known_ssrcs:
                self.ssrc_index[key] = ref
        if entity.sfu_stream_id:
            self.batch_streams[entity.sfu_stream_id] = ref
            if old is None or restored or old.sfu_stream_id != entity.sfu_stream_id:
                self.streams[entity.sfu_stream_id] = SfuMediaStream(entity.service_id, entity.sfu_stream_id,
                                                                    entity.kind, ref)


def _merged(known: tuple[int, ...], seen: list[int]) -> tuple[int, ...]:
    if len(seen) == 1 and seen[0] in known:
        return known
    if all(ssrc in known for ssrc in seen):
        return known
    return known + tuple(ssrc for ssrc in seen if ssrc not in known)


def _ref(track: InboundTrack | OutboundTrack) -> TrackRef:
    return TrackRef(track.call_id, track.client_id, track.user_id, track.peer_connection_id, track.track_id)


async def _match(repos: Repositories, plan: _Plan) -> None:
    """Find the remote outbound track of every inbound track not matched yet (spec §6.1).

    Through an SFU: the outbound track that published the inbound track's sfuStreamId. Peer to
    peer: the outbound track of another client of the same call with one of the inbound track's
    SSRCs. Both are looked up in the batch first, then in the storages (one read each), so a
    remote track reported in an earlier batch, or by another daemon, matches as well (BUG 3 fixed:
    the reference started from the outbound side, only within one batch, behind an inverted guard).
    """
    pending = [track for track in plan.inbound.values() if track.remote is None]
    if not pending:
        return
    stream_keys: set[str] = set()
    ssrc_keys: set[str] = set()
    for track in pending:
        if track.sfu_stream_id:
            if track.sfu_stream_id not in plan.batch_streams:
                stream_keys.add(track.sfu_stream_id)
        else:
            ssrc_keys.update(k for ssrc in track.ssrcs if (k := ssrc_key(track.call_id, ssrc)) not in plan.batch_ssrcs)
    streams, indexed = await asyncio.gather(get_all(repos.sfu_media_streams, stream_keys),
                                            get_all(repos.outbound_track_ssrcs, ssrc_keys))
    for track in pending:
        remote: TrackRef | None = None
        if track.sfu_stream_id:
            remote = plan.batch_streams.get(track.sfu_stream_id)
            if remote is None and (stream := streams.get(track.sfu_stream_id)) is not None:
                remote = stream.track
        else:
            for ssrc in track.ssrcs:
                key = ssrc_key(track.call_id, ssrc)
                candidate = plan.batch_ssrcs.get(key) or indexed.get(key)
                if candidate is not None and candidate.client_id != track.client_id:
                    remote = candidate
                    break
        if remote is not None:
            plan.inbound[track.track_id] = replace(track, remote=remote)
