"""Entity lifecycle events as reports (spec/observer.md §5).

Opening events carry the entity's creation time; closing events the last sample time that touched
the entity (CALL_ENDED: the call's last server touch, as the reference), else the caller's ``now``.
"""

from __future__ import annotations

from observer.reports.events import (
    CallEventName,
    SfuEventName,
    StreamDirection,
    call_event,
    lifecycle_timestamp,
    media_track_attachments,
    sfu_event,
    sfu_rtp_pad_attachments,
    sfu_transport_attachments,
)
from observer.reports.model import Report
from observer.repositories import (
    Call,
    Client,
    InboundTrack,
    JournalEntity,
    OutboundTrack,
    PeerConnection,
    Sfu,
    SfuInboundRtpPad,
    SfuOutboundRtpPad,
    SfuSctpChannel,
    SfuTransport,
)


def call_started(call: Call) -> Report:
    return call_event(CallEventName.CALL_STARTED, service_id=call.service_id, room_id=call.room_id,
                      call_id=call.call_id, timestamp=call.started, marker=call.marker)


def call_ended(call: Call, now: int) -> Report:
    timestamp = call.server_touched if call.sample_touched is not None else now
    return call_event(CallEventName.CALL_ENDED, service_id=call.service_id, room_id=call.room_id,
                      call_id=call.call_id, timestamp=timestamp, marker=call.marker)


def client_event(client: Client, *, opened: bool, now: int) -> Report:
    name = CallEventName.CLIENT_JOINED if opened else CallEventName.CLIENT_LEFT
    return call_event(
        name, service_id=client.service_id, room_id=client.room_id, call_id=client.call_id,
        timestamp=lifecycle_timestamp(name, created=client.joined, last_sampled=client.sample_touched, now=now),
        client_id=client.client_id, user_id=client.user_id, media_unit_id=client.media_unit_id,
        marker=client.marker, attachments={"timeZoneId": client.time_zone_id},
    )


def peer_connection_event(pc: PeerConnection, *, opened: bool, now: int) -> Report:
    name = CallEventName.PEER_CONNECTION_OPENED if opened else CallEventName.PEER_CONNECTION_CLOSED
    return call_event(
        name, service_id=pc.service_id, room_id=pc.room_id, call_id=pc.call_id,
        timestamp=lifecycle_timestamp(name, created=pc.opened, last_sampled=pc.sample_touched, now=now),
        client_id=pc.client_id, user_id=pc.user_id, media_unit_id=pc.media_unit_id,
        peer_connection_id=pc.peer_connection_id, marker=pc.marker,
    )


def track_event(track: InboundTrack | OutboundTrack, *, opened: bool, now: int) -> Report:
    name = CallEventName.MEDIA_TRACK_ADDED if opened else CallEventName.MEDIA_TRACK_REMOVED
    if isinstance(track, InboundTrack):
        attachments = media_track_attachments(StreamDirection.INBOUND, track.kind, track.sfu_stream_id,
                                              track.sfu_sink_id)
    else:
        # the track's own kind (BUG 9 fixed: outbound tracks always said AUDIO)
        attachments = media_track_attachments(StreamDirection.OUTBOUND, track.kind, track.sfu_stream_id)
    return call_event(
        name, service_id=track.service_id, room_id=track.room_id, call_id=track.call_id,
        timestamp=lifecycle_timestamp(name, created=track.added, last_sampled=track.sample_touched, now=now),
        client_id=track.client_id, user_id=track.user_id, media_unit_id=track.media_unit_id,
        peer_connection_id=track.peer_connection_id, media_track_id=track.track_id,
        ssrc=track.ssrcs[0] if len(track.ssrcs) == 1 else None, marker=track.marker, attachments=attachments,
    )


def closing_event(entity: JournalEntity, now: int) -> Report:
    """CALL_ENDED, CLIENT_LEFT, PEER_CONNECTION_CLOSED or MEDIA_TRACK_REMOVED of a call-side entity."""
    if isinstance(entity, Call):
        return call_ended(entity, now)
    if isinstance(entity, Client):
        return client_event(entity, opened=False, now=now)
    if isinstance(entity, PeerConnection):
        return peer_connection_event(entity, opened=False, now=now)
    return track_event(entity, opened=False, now=now)


def sfu_lifecycle_event(sfu: Sfu, *, opened: bool, now: int) -> Report:
    name = SfuEventName.SFU_JOINED if opened else SfuEventName.SFU_LEFT
    return sfu_event(
        name, service_id=sfu.service_id, sfu_id=sfu.sfu_id, media_unit_id=sfu.media_unit_id, marker=sfu.marker,
        timestamp=lifecycle_timestamp(name, created=sfu.joined, last_sampled=sfu.sample_touched, now=now),
    )


def transport_event(transport: SfuTransport, *, opened: bool, now: int) -> Report:
    name = SfuEventName.SFU_TRANSPORT_OPENED if opened else SfuEventName.SFU_TRANSPORT_CLOSED
    return sfu_event(
        name, service_id=transport.service_id, sfu_id=transport.sfu_id, media_unit_id=transport.media_unit_id,
        marker=transport.marker, transport_id=transport.transport_id,
        timestamp=lifecycle_timestamp(name, created=transport.opened, last_sampled=transport.sample_touched,
                                      now=now),
        attachments=sfu_transport_attachments(transport.internal),
    )


def rtp_pad_event(pad: SfuInboundRtpPad | SfuOutboundRtpPad, *, opened: bool, now: int) -> Report:
    name = SfuEventName.SFU_RTP_PAD_ADDED if opened else SfuEventName.SFU_RTP_PAD_REMOVED
    inbound = isinstance(pad, SfuInboundRtpPad)
    direction = StreamDirection.INBOUND if inbound else StreamDirection.OUTBOUND
    return sfu_event(
        name, service_id=pad.service_id, sfu_id=pad.sfu_id, media_unit_id=pad.media_unit_id, marker=pad.marker,
        transport_id=pad.transport_id, media_stream_id=pad.sfu_stream_id,
        media_sink_id=None if inbound else pad.sfu_sink_id,  # type: ignore[union-attr]
        rtp_pad_id=pad.pad_id,
        timestamp=lifecycle_timestamp(name, created=pad.added, last_sampled=pad.sample_touched, now=now),
        attachments=sfu_rtp_pad_attachments(direction, pad.internal),
    )


def sctp_channel_event(channel: SfuSctpChannel, *, opened: bool, now: int) -> Report:
    name = SfuEventName.SFU_SCTP_STREAM_ADDED if opened else SfuEventName.SFU_SCTP_STREAM_REMOVED
    return sfu_event(
        name, service_id=channel.service_id, sfu_id=channel.sfu_id, media_unit_id=channel.media_unit_id,
        marker=channel.marker, transport_id=channel.transport_id, sctp_stream_id=channel.sctp_stream_id,
        # the last sample time for REMOVED too (BUG 9 fixed: the reference used the opened time)
        timestamp=lifecycle_timestamp(name, created=channel.opened, last_sampled=channel.sample_touched, now=now),
    )
