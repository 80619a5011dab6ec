"""Grouping one batch of samples by the entities they touch (spec/observer.md §1.3, §2.1).

Client samples: service+room -> client -> peer connection -> inbound/outbound track.
SFU samples: sfu -> transport, inbound pad, outbound pad, SCTP channel.
Elements without the ids an entity needs are left out of the grouping (their reports are still
built from the samples); a sample without its required ids (clientId/roomId, sfuId) is skipped
entirely and counted by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from observer.reports.schema import to_bool
from observer.repositories import AUDIO, VIDEO, room_key
from observer.samples.model import Sample

INBOUND = "inbound"
OUTBOUND = "outbound"

_TRACK_LISTS = (
    ("inboundAudioTracks", AUDIO, INBOUND),
    ("inboundVideoTracks", VIDEO, INBOUND),
    ("outboundAudioTracks", AUDIO, OUTBOUND),
    ("outboundVideoTracks", VIDEO, OUTBOUND),
)
_LABELLED_LISTS = ("pcTransports", "iceCandidatePairs")


def _str(value: Any) -> str | None:
    return value if value.__class__ is str and value else None


def _int(value: Any) -> int | None:
    if value.__class__ is int:
        return value
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _objects(items: Any) -> list[Any] | tuple[()]:
    """The list (its non-dict items are skipped by the callers), or nothing."""
    return items if items.__class__ is list else ()


def _is_true(value: Any) -> bool:
    return value is True or (value is not None and value is not False and to_bool(value) is True)


# ---------------------------------------------------------------------------------------- client side
@attrs.define(slots=True, eq=False)
class ObservedTrack:
    track_id: str
    peer_connection_id: str
    kind: str
    direction: str
    ssrcs: list[int]
    sfu_stream_id: str | None
    sfu_sink_id: str | None



def _widen(observed: Any, timestamp: int) -> None:
    """Stretch an observed object's [min_ts, max_ts] to cover ``timestamp``."""
    if timestamp < observed.min_ts:
        observed.min_ts = timestamp
    elif timestamp > observed.max_ts:
        observed.max_ts = timestamp

@attrs.define(slots=True, eq=False)
class ObservedPeerConnection:
    peer_connection_id: str
    label: str | None = None
    inbound: dict[str, ObservedTrack] = attrs.Factory(dict)
    outbound: dict[str, ObservedTrack] = attrs.Factory(dict)


@attrs.define(slots=True, eq=False)
class ObservedClient:
    service_id: str
    room_id: str
    client_id: str
    media_unit_id: str
    min_ts: int
    max_ts: int
    samples: list[tuple[Sample, str]] = attrs.Factory(list)  # (sample, mediaUnitId of its frame)
    user_id: str | None = None
    marker: str | None = None
    call_id: str | None = None  # the first callId the client sent (slave mode)
    time_zone_offset: Any = None
    peer_connections: dict[str, ObservedPeerConnection] = attrs.Factory(dict)

    @property
    def room_key(self) -> str:
        return room_key(self.service_id, self.room_id)

    def add(self, sample: Sample, media_unit_id: str, timestamp: int) -> None:
        self.samples.append((sample, media_unit_id))
        _widen(self, timestamp)
        if self.user_id is None:
            self.user_id = _str(sample.get("userId"))
        if self.marker is None:
            self.marker = _str(sample.get("marker"))
        if self.call_id is None:
            self.call_id = _str(sample.get("callId"))
        if self.time_zone_offset is None:
            self.time_zone_offset = sample.get("timeZoneOffsetInHours")
        pcs = self.peer_connections
        for key in _LABELLED_LISTS:
            for el in _objects(sample.get(key)):
                if el.__class__ is not dict:
                    continue
                pc_id = _str(el.get("peerConnectionId"))
                if pc_id is None:
                    continue
                pc = pcs.get(pc_id)
                if pc is None:
                    pc = pcs[pc_id] = ObservedPeerConnection(pc_id)
                if pc.label is None:
                    pc.label = _str(el.get("label"))
        for el in _objects(sample.get("dataChannels")):
            if el.__class__ is not dict:
                continue
            pc_id = _str(el.get("peerConnectionId"))
            if pc_id is not None and pc_id not in pcs:
                pcs[pc_id] = ObservedPeerConnection(pc_id)
        for key, kind, direction in _TRACK_LISTS:
            for el in _objects(sample.get(key)):
                if el.__class__ is dict:
                    self._add_track(el, kind, direction)

    def _add_track(self, el: dict[str, Any], kind: str, direction: str) -> None:
        pc_id = _str(el.get("peerConnectionId"))
        track_id = _str(el.get("trackId"))
        if pc_id is None or track_id is None:
            return
        pc = self.peer_connections.get(pc_id)
        if pc is None:
            pc = self.peer_connections[pc_id] = ObservedPeerConnection(pc_id)
        tracks = pc.inbound if direction == INBOUND else pc.outbound
        ssrc = _int(el.get("ssrc"))
        track = tracks.get(track_id)
        if track is None:
            tracks[track_id] = ObservedTrack(
                track_id, pc_id, kind, direction, [] if ssrc is None else [ssrc],
                _str(el.get("sfuStreamId")),
                _str(el.get("sfuSinkId")) if direction == INBOUND else None,
            )
            return
        if ssrc is not None and ssrc not in track.ssrcs:
            track.ssrcs.append(ssrc)
        if track.sfu_stream_id is None:
            track.sfu_stream_id = _str(el.get("sfuStreamId"))
        if direction == INBOUND and track.sfu_sink_id is None:
            track.sfu_sink_id = _str(el.get("sfuSinkId"))


@attrs.define(slots=True, eq=False)
class ObservedRoom:
    service_id: str
    room_id: str
    key: str
    min_ts: int
    max_ts: int
    marker: str | None = None  # the first sample marker (BUG 9 fixed: was the first clientId)
    clients: dict[str, ObservedClient] = attrs.Factory(dict)


@attrs.define(slots=True, eq=False)
class ClientBatch:
    rooms: dict[str, ObservedRoom] = attrs.Factory(dict)
    invalid: int = 0  # samples without clientId / roomId / timestamp

    def __bool__(self) -> bool:
        return bool(self.rooms)

    def clients(self) -> Iterable[ObservedClient]:
        for room in self.rooms.values():
            yield from room.clients.values()

    def add(self, service_id: str, media_unit_id: str, sample: Sample) -> None:
        client_id = _str(sample.get("clientId"))
        room_id = _str(sample.get("roomId"))
        timestamp = _int(sample.get("timestamp"))
        if client_id is None or room_id is None or timestamp is None:
            self.invalid += 1
            return
        key = room_key(service_id, room_id)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = ObservedRoom(service_id, room_id, key, timestamp, timestamp)
        else:
            _widen(room, timestamp)
        if room.marker is None:
            room.marker = _str(sample.get("marker"))
        client = room.clients.get(client_id)
        if client is None:
            client = room.clients[client_id] = ObservedClient(
                service_id, room_id, client_id, media_unit_id, timestamp, timestamp)
        client.add(sample, media_unit_id, timestamp)


# ---------------------------------------------------------------------------------------- sfu side
@attrs.define(slots=True, eq=False)
class ObservedTransport:
    transport_id: str
    internal: bool


@attrs.define(slots=True, eq=False)
class ObservedInboundPad:
    pad_id: str
    transport_id: str | None
    stream_id: str | None
    ssrc: int | None
    internal: bool


@attrs.define(slots=True, eq=False)
class ObservedOutboundPad:
    pad_id: str
    transport_id: str | None
    stream_id: str | None
    sink_id: str | None
    ssrc: int | None
    internal: bool


@attrs.define(slots=True, eq=False)
class ObservedSctpChannel:
    channel_id: str
    transport_id: str
    stream_id: str


@attrs.define(slots=True, eq=False)
class ObservedSfu:
    service_id: str
    sfu_id: str
    media_unit_id: str
    min_ts: int
    max_ts: int
    samples: list[tuple[Sample, str]] = attrs.Factory(list)
    marker: str | None = None
    time_zone_offset: Any = None
    transports: dict[str, ObservedTransport] = attrs.Factory(dict)
    inbound_pads: dict[str, ObservedInboundPad] = attrs.Factory(dict)
    outbound_pads: dict[str, ObservedOutboundPad] = attrs.Factory(dict)
    sctp_channels: dict[str, ObservedSctpChannel] = attrs.Factory(dict)

    def add(self, sample: Sample, media_unit_id: str, timestamp: int) -> None:
        self.samples.append((sample, media_unit_id))
        _widen(self, timestamp)
        if self.marker is None:
            self.marker = _str(sample.get("marker"))
        if self.time_zone_offset is None:
            self.time_zone_offset = sample.get("timeZoneOffsetInHours")
        for el in _objects(sample.get("transports")):
            if el.__class__ is dict:
                self._transport(el)
        for el in _objects(sample.get("inboundRtpPads")):
            if el.__class__ is not dict:
                continue
            pad_id = _str(el.get("padId"))
            if pad_id is None or pad_id in self.inbound_pads:
                continue
            transport = self._transport(el)
            self.inbound_pads[pad_id] = ObservedInboundPad(
                pad_id, transport.transport_id if transport else None, _str(el.get("streamId")),
                _int(el.get("ssrc")), _is_true(el.get("internal")) or bool(transport and transport.internal))
        for el in _objects(sample.get("outboundRtpPads")):
            if el.__class__ is not dict:
                continue
            pad_id = _str(el.get("padId"))
            if pad_id is None or pad_id in self.outbound_pads:
                continue
            transport = self._transport(el)
            self.outbound_pads[pad_id] = ObservedOutboundPad(
                pad_id, transport.transport_id if transport else None, _str(el.get("streamId")),
                _str(el.get("sinkId")), _int(el.get("ssrc")),
                _is_true(el.get("internal")) or bool(transport and transport.internal))
        for el in _objects(sample.get("sctpChannels")):
            if el.__class__ is not dict:
                continue
            channel_id = _str(el.get("channelId"))
            stream_id = _str(el.get("streamId"))
            transport = self._transport(el)
            if channel_id is None or stream_id is None or transport is None:
                continue
            if channel_id not in self.sctp_channels:
                self.sctp_channels[channel_id] = ObservedSctpChannel(channel_id, transport.transport_id, stream_id)

    def _transport(self, el: dict[str, Any]) -> ObservedTransport | None:
        transport_id = _str(el.get("transportId"))
        if transport_id is None:
            return None
        transport = self.transports.get(transport_id)
        if transport is None:
            # the first element naming the transport decides whether it is internal
            transport = self.transports[transport_id] = ObservedTransport(
                transport_id, _is_true(el.get("internal")))
        return transport


@attrs.define(slots=True, eq=False)
class SfuBatch:
    sfus: dict[str, ObservedSfu] = attrs.Factory(dict)
    invalid: int = 0

    def __bool__(self) -> bool:
        return bool(self.sfus)

    def add(self, service_id: str, media_unit_id: str, sample: Sample) -> None:
        sfu_id = _str(sample.get("sfuId"))
        timestamp = _int(sample.get("timestamp"))
        if sfu_id is None or timestamp is None:
            self.invalid += 1
            return
        sfu = self.sfus.get(sfu_id)
        if sfu is None:
            sfu = self.sfus[sfu_id] = ObservedSfu(service_id, sfu_id, media_unit_id, timestamp, timestamp)
        sfu.add(sample, media_unit_id, timestamp)
