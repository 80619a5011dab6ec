"""SFU-side entity updates and pad attribution for one batch (spec/observer.md §2.3, §6.2, §6.3).

Like the client side: one ``get_all`` and one ``set_all`` per kind, parents first; opening events
for exactly the entities ``set_all`` found absent. Server touches are milliseconds (BUG 5 fixed).

Attribution: an inbound pad carries the publisher's call/client/track, found through the
SfuMediaStream of its streamId (written by the publisher's outbound track); an outbound pad the
subscriber's, through the SfuMediaSink of its sinkId (written by the subscriber's inbound track;
BUG 4 fixed: the reference wrote it into the inbound depot). An internal inbound pad (SFU to SFU)
is matched to the remote SFU's internal outbound pad with the same streamId and SSRC, through an
index written when that outbound pad appears. Attributions are kept on the pad entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import attrs

from observer.pipeline.batch import ObservedSfu
from observer.pipeline.bulk import get_all, set_all, write_created
from observer.pipeline.lifecycle import rtp_pad_event, sctp_channel_event, sfu_lifecycle_event, transport_event
from observer.reports.enrichment import PadEnrichment
from observer.reports.events import time_zone_id
from observer.reports.model import Report
from observer.repositories import (
    PadRef,
    Repositories,
    Sfu,
    SfuInboundRtpPad,
    SfuOutboundRtpPad,
    SfuSctpChannel,
    SfuTransport,
    TrackRef,
    replace,
    ssrc_key,
    touch,
)


@attrs.define(eq=False)
class SfuEntitiesResult:
    events: list[Report] = attrs.Factory(list)
    enrichment: dict[str, PadEnrichment] = attrs.Factory(dict)  # padId -> attribution for the reports


async def update_sfu_entities(repos: Repositories, sfus: Mapping[str, ObservedSfu], *, now: int,
                              match_rtp_pads: bool) -> SfuEntitiesResult:
    out = SfuEntitiesResult()
    if not sfus:
        return out
    transport_ids = {t for sfu in sfus.values() for t in sfu.transports}
    in_ids = {p for sfu in sfus.values() for p in sfu.inbound_pads}
    out_ids = {p for sfu in sfus.values() for p in sfu.outbound_pads}
    channel_ids = {c for sfu in sfus.values() for c in sfu.sctp_channels}
    old_sfus, old_transports, old_in, old_out, old_channels = await asyncio.gather(
        get_all(repos.sfus, set(sfus)), get_all(repos.sfu_transports, transport_ids),
        get_all(repos.sfu_inbound_rtp_pads, in_ids), get_all(repos.sfu_outbound_rtp_pads, out_ids),
        get_all(repos.sfu_sctp_channels, channel_ids))

    new_sfus: dict[str, Sfu] = {}
    transports: dict[str, SfuTransport] = {}
    in_pads: dict[str, SfuInboundRtpPad] = {}
    out_pads: dict[str, SfuOutboundRtpPad] = {}
    channels: dict[str, SfuSctpChannel] = {}
    # attribution of pads without an entity (e.g. no transportId): padId -> (streamId or sinkId)
    loose_in: dict[str, str] = {}
    loose_out: dict[str, str] = {}
    pad_index: dict[str, PadRef] = {}
    batch_pad_index: dict[str, PadRef] = {}

    for sfu_id, observed in sfus.items():
        old = old_sfus.get(sfu_id)
        if old is None:
            sfu = Sfu(observed.service_id, sfu_id, observed.min_ts, observed.max_ts, now, observed.media_unit_id,
                      time_zone_id(observed.time_zone_offset), observed.marker)
        else:
            sfu = touch(old, observed.max_ts, now)
        new_sfus[sfu_id] = sfu
        base = (observed.service_id, sfu_id)
        for transport_id, t in observed.transports.items():
            old_t = old_transports.get(transport_id)
            if old_t is None:
                transports[transport_id] = SfuTransport(*base, transport_id, t.internal, observed.min_ts,
                                                        observed.max_ts, now, observed.media_unit_id,
                                                        observed.marker)
            else:
                transports[transport_id] = touch(old_t, observed.max_ts, now)
        for pad_id, p in observed.inbound_pads.items():
            old_p = old_in.get(pad_id)
            if p.transport_id is None or p.stream_id is None:
                if p.stream_id is not None:
                    loose_in[pad_id] = p.stream_id
                continue
            if old_p is None:
                internal = p.internal or transports[p.transport_id].internal
                in_pads[pad_id] = SfuInboundRtpPad(*base, p.transport_id, p.stream_id, pad_id, p.ssrc, internal,
                                                   observed.min_ts, observed.max_ts, now, observed.media_unit_id,
                                                   observed.marker)
            else:
                in_pads[pad_id] = touch(old_p, observed.max_ts, now,
                                        ssrc=old_p.ssrc if old_p.ssrc is not None else p.ssrc)
        for pad_id, q in observed.outbound_pads.items():
            old_q = old_out.get(pad_id)
            if q.transport_id is None or q.sink_id is None:
                if q.sink_id is not None:
                    loose_out[pad_id] = q.sink_id
                continue
            if old_q is None:
                internal = q.internal or transports[q.transport_id].internal
                pad = out_pads[pad_id] = SfuOutboundRtpPad(
                    *base, q.transport_id, q.stream_id, q.sink_id, pad_id, q.ssrc, internal, observed.min_ts,
                    observed.max_ts, now, observed.media_unit_id, observed.marker)
            else:
                pad = out_pads[pad_id] = touch(old_q, observed.max_ts, now,
                                               ssrc=old_q.ssrc if old_q.ssrc is not None else q.ssrc)
            if pad.internal and pad.sfu_stream_id and pad.ssrc is not None:
                key = ssrc_key(pad.sfu_stream_id, pad.ssrc)
                ref = PadRef(sfu_id, pad.transport_id, pad.sfu_sink_id, pad_id)
                batch_pad_index[key] = ref
                if old_q is None or old_q.ssrc != pad.ssrc:
                    pad_index[key] = ref
        for channel_id, c in observed.sctp_channels.items():
            old_c = old_channels.get(channel_id)
            if old_c is None:
                channels[channel_id] = SfuSctpChannel(*base, c.transport_id, c.stream_id, channel_id, observed.min_ts,
                                                      observed.max_ts, now, observed.media_unit_id, observed.marker)
            else:
                channels[channel_id] = touch(old_c, observed.max_ts, now)

    await _attribute(repos, in_pads, out_pads, loose_in, loose_out, batch_pad_index, match_rtp_pads, out)

    out.events.extend((await write_created(repos.sfus.set_all, new_sfus, sfu_lifecycle_event, now))[0])
    out.events.extend((await write_created(repos.sfu_transports.set_all, transports, transport_event, now))[0])
    for events, _ in await asyncio.gather(
            write_created(repos.sfu_inbound_rtp_pads.set_all, in_pads, rtp_pad_event, now),
            write_created(repos.sfu_outbound_rtp_pads.set_all, out_pads, rtp_pad_event, now),
            write_created(repos.sfu_sctp_channels.set_all, channels, sctp_channel_event, now)):
        out.events.extend(events)
    if pad_index:
        await set_all(repos.sfu_internal_outbound_pads, pad_index)
    return out


async def _attribute(repos: Repositories, in_pads: dict[str, SfuInboundRtpPad],
                     out_pads: dict[str, SfuOutboundRtpPad], loose_in: dict[str, str], loose_out: dict[str, str],
                     batch_pad_index: dict[str, PadRef], match_rtp_pads: bool, out: SfuEntitiesResult) -> None:
    stream_keys = {p.sfu_stream_id for p in in_pads.values() if p.track is None}
    stream_keys.update(loose_in.values())
    sink_keys = {p.sfu_sink_id for p in out_pads.values() if p.track is None}
    sink_keys.update(loose_out.values())
    remote_keys: set[str] = set()
    if match_rtp_pads:
        remote_keys = {k for p in in_pads.values()
                       if p.internal and p.remote is None and p.ssrc is not None
                       and (k := ssrc_key(p.sfu_stream_id, p.ssrc)) not in batch_pad_index}
    streams, sinks, remotes = await asyncio.gather(
        get_all(repos.sfu_media_streams, stream_keys), get_all(repos.sfu_media_sinks, sink_keys),
        get_all(repos.sfu_internal_outbound_pads, remote_keys))

    enrichment = out.enrichment
    for pad_id, pad in in_pads.items():
        track, remote = pad.track, pad.remote
        if track is None and (stream := streams.get(pad.sfu_stream_id)) is not None:
            track = stream.track
        if match_rtp_pads and remote is None and pad.internal and pad.ssrc is not None:
            key = ssrc_key(pad.sfu_stream_id, pad.ssrc)
            candidate = batch_pad_index.get(key) or remotes.get(key)
            if candidate is not None and candidate.pad_id != pad_id:
                remote = candidate
        if track is not pad.track or remote is not pad.remote:
            in_pads[pad_id] = replace(pad, track=track, remote=remote)
        if track is not None or (match_rtp_pads and remote is not None):
            enrichment[pad_id] = _enrichment(track, remote if match_rtp_pads else None)
    for pad_id, out_pad in out_pads.items():
        track = out_pad.track
        if track is None and (sink := sinks.get(out_pad.sfu_sink_id)) is not None:
            track = sink.track
            out_pads[pad_id] = replace(out_pad, track=track)
        if track is not None:
            enrichment[pad_id] = _enrichment(track, None)
    for pad_id, stream_id in loose_in.items():
        if (stream := streams.get(stream_id)) is not None:
            enrichment[pad_id] = _enrichment(stream.track, None)
    for pad_id, sink_id in loose_out.items():
        if (sink := sinks.get(sink_id)) is not None:
            enrichment[pad_id] = _enrichment(sink.track, None)


def _enrichment(track: TrackRef | None, remote: PadRef | None) -> PadEnrichment:
    kwargs: dict[str, Any] = {}
    if track is not None:
        kwargs.update(call_id=track.call_id, client_id=track.client_id, track_id=track.track_id)
    if remote is not None:
        kwargs.update(remote_sfu_id=remote.sfu_id, remote_transport_id=remote.transport_id,
                      remote_sink_id=remote.sink_id, remote_rtp_pad_id=remote.pad_id)
    return PadEnrichment(**kwargs)
