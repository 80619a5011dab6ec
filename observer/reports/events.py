"""CALL_EVENT and SFU_EVENT reports for entity lifecycle events (spec/observer.md §5).

``attachments`` of these reports is the base64 of a JSON object. Empty strings given for optional
ids are reported as null (BUG 12 fixed: protobuf models gave "" for absent values).
"""

from __future__ import annotations

import base64
import enum
import math
from collections.abc import Mapping
from typing import Any

import orjson

from observer.reports.model import Report, ReportType
from observer.reports.schema import conform


class CallEventName(enum.StrEnum):
    CALL_STARTED = "CALL_STARTED"
    CALL_ENDED = "CALL_ENDED"
    CLIENT_JOINED = "CLIENT_JOINED"
    CLIENT_LEFT = "CLIENT_LEFT"
    PEER_CONNECTION_OPENED = "PEER_CONNECTION_OPENED"
    PEER_CONNECTION_CLOSED = "PEER_CONNECTION_CLOSED"
    MEDIA_TRACK_ADDED = "MEDIA_TRACK_ADDED"
    MEDIA_TRACK_REMOVED = "MEDIA_TRACK_REMOVED"


class SfuEventName(enum.StrEnum):
    SFU_JOINED = "SFU_JOINED"
    SFU_LEFT = "SFU_LEFT"
    SFU_TRANSPORT_OPENED = "SFU_TRANSPORT_OPENED"
    SFU_TRANSPORT_CLOSED = "SFU_TRANSPORT_CLOSED"
    SFU_RTP_PAD_ADDED = "SFU_RTP_PAD_ADDED"
    SFU_RTP_PAD_REMOVED = "SFU_RTP_PAD_REMOVED"
    SFU_SCTP_STREAM_ADDED = "SFU_SCTP_STREAM_ADDED"
    SFU_SCTP_STREAM_REMOVED = "SFU_SCTP_STREAM_REMOVED"


class StreamDirection(enum.StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


# events that close an entity's life; every other name opens one
_ENDING = frozenset({
    CallEventName.CALL_ENDED, CallEventName.CLIENT_LEFT, CallEventName.PEER_CONNECTION_CLOSED,
    CallEventName.MEDIA_TRACK_REMOVED, SfuEventName.SFU_LEFT, SfuEventName.SFU_TRANSPORT_CLOSED,
    SfuEventName.SFU_RTP_PAD_REMOVED, SfuEventName.SFU_SCTP_STREAM_REMOVED,
})

# the reference implementation's messages, used when the caller gives none
_CALL_MESSAGES: dict[CallEventName, str] = {
    CallEventName.CALL_STARTED: "Call ({call_id}) is started",
    CallEventName.CALL_ENDED: "Call ({call_id}) is ended",
    CallEventName.CLIENT_JOINED: "Client is joined",
    CallEventName.CLIENT_LEFT: "Client left",
    CallEventName.PEER_CONNECTION_OPENED: "PeerConnection ({peer_connection_id}) is opened",
    CallEventName.PEER_CONNECTION_CLOSED: "Peer Connection ({peer_connection_id}) is closed",
    CallEventName.MEDIA_TRACK_ADDED: "Media Track ({media_track_id}) is added",
    CallEventName.MEDIA_TRACK_REMOVED: "Media Track ({media_track_id}) is removed",
}
_SFU_MESSAGES: dict[SfuEventName, str] = {
    SfuEventName.SFU_JOINED: "Sfu is joined",
    SfuEventName.SFU_LEFT: "Sfu is left",
    SfuEventName.SFU_TRANSPORT_OPENED: "Sfu Transport ({transport_id}) is opened",
    SfuEventName.SFU_TRANSPORT_CLOSED: "Sfu Transport ({transport_id}) is closed",
    SfuEventName.SFU_RTP_PAD_ADDED: "Sfu RTP pad ({rtp_pad_id}) is added",
    SfuEventName.SFU_RTP_PAD_REMOVED: "Sfu RTP pad ({rtp_pad_id}) is removed",
    SfuEventName.SFU_SCTP_STREAM_ADDED: "Sfu SCTP stream ({sctp_stream_id}) is added",
    SfuEventName.SFU_SCTP_STREAM_REMOVED: "Sfu SCTP stream ({sctp_stream_id}) is removed",
}


def call_event(
    name: CallEventName | str,
    *,
    service_id: str,
    room_id: str | None,
    call_id: str | None,
    timestamp: int,
    client_id: str | None = None,
    user_id: str | None = None,
    media_unit_id: str | None = None,
    peer_connection_id: str | None = None,
    media_track_id: str | None = None,
    ssrc: int | None = None,
    marker: str | None = None,
    message: str | None = None,
    value: str | None = None,
    attachments: Mapping[str, Any] | None = None,
    sample_timestamp: int | None = None,
    sample_seq: int | None = None,
) -> Report:
    """A CALL_EVENT report. Without ``message`` a standard name gets the reference message.
    Raises ValueError when serviceId or timestamp is missing."""
    ids = {
        "call_id": _id(call_id), "peer_connection_id": _id(peer_connection_id),
        "media_track_id": _id(media_track_id),
    }
    if message is None and name in _CALL_MESSAGES:
        message = _CALL_MESSAGES[CallEventName(name)].format(**ids)
    return _report(ReportType.CALL_EVENT, {
        "serviceId": _id(service_id),
        "mediaUnitId": _id(media_unit_id),
        "marker": _id(marker),
        "timestamp": timestamp,
        "callId": ids["call_id"],
        "roomId": _id(room_id),
        "clientId": _id(client_id),
        "userId": _id(user_id),
        "peerConnectionId": ids["peer_connection_id"],
        "mediaTrackId": ids["media_track_id"],
        "SSRC": ssrc,
        "sampleTimestamp": sample_timestamp,
        "sampleSeq": sample_seq,
        "name": str(name),
        "message": message,
        "value": value,
        "attachments": encode_attachments(attachments),
    })


def sfu_event(
    name: SfuEventName | str,
    *,
    service_id: str,
    sfu_id: str | None,
    timestamp: int,
    media_unit_id: str | None = None,
    marker: str | None = None,
    call_id: str | None = None,
    transport_id: str | None = None,
    media_stream_id: str | None = None,
    media_sink_id: str | None = None,
    sctp_stream_id: str | None = None,
    rtp_pad_id: str | None = None,
    message: str | None = None,
    value: str | None = None,
    attachments: Mapping[str, Any] | None = None,
) -> Report:
    """An SFU_EVENT report. Without ``message`` a standard name gets a reference-style message.
    Raises ValueError when serviceId or timestamp is missing."""
    ids = {
        "transport_id": _id(transport_id), "rtp_pad_id": _id(rtp_pad_id),
        "sctp_stream_id": _id(sctp_stream_id),
    }
    if message is None and name in _SFU_MESSAGES:
        message = _SFU_MESSAGES[SfuEventName(name)].format(**ids)
    return _report(ReportType.SFU_EVENT, {
        "serviceId": _id(service_id),
        "mediaUnitId": _id(media_unit_id),
        "marker": _id(marker),
        "timestamp": timestamp,
        "sfuId": _id(sfu_id),
        "callId": _id(call_id),
        "transportId": ids["transport_id"],
        "mediaStreamId": _id(media_stream_id),
        "mediaSinkId": _id(media_sink_id),
        "sctpStreamId": ids["sctp_stream_id"],
        "rtpPadId": ids["rtp_pad_id"],
        "name": str(name),
        "message": message,
        "value": value,
        "attachments": encode_attachments(attachments),
    })


def lifecycle_timestamp(name: CallEventName | SfuEventName, *, created: int, last_sampled: int | None,
                        now: int) -> int:
    """The timestamp of a lifecycle event: the entity's creation time for started/joined/opened/added
    events; for ended/left/closed/removed events the last sample that touched it, else ``now``.
    SFU_SCTP_STREAM_REMOVED follows the same rule (BUG 9 fixed: it used the opened time)."""
    if name in _ENDING:
        return last_sampled if last_sampled is not None else now
    return created


# --------------------------------------------------------------------------------------------
# attachments

def encode_attachments(attachments: Mapping[str, Any] | None) -> str | None:
    """base64 of the JSON object, the reference's encoding of event attachments."""
    if attachments is None:
        return None
    return base64.b64encode(orjson.dumps(dict(attachments))).decode("ascii")


def decode_attachments(text: str) -> dict[str, Any]:
    decoded = orjson.loads(base64.b64decode(text, validate=True))
    if not isinstance(decoded, dict):
        raise ValueError("attachments are not a JSON object")
    return decoded


def client_attachments(time_zone_offset: Any) -> dict[str, Any]:
    """CLIENT_JOINED / CLIENT_LEFT: ``{"timeZoneId": …}`` from the sample's timeZoneOffsetInHours."""
    return {"timeZoneId": time_zone_id(time_zone_offset)}


def media_track_attachments(
    direction: StreamDirection,
    media_kind: str | None,
    sfu_stream_id: str | None = None,
    sfu_sink_id: str | None = None,
) -> dict[str, Any]:
    """MEDIA_TRACK_ADDED / _REMOVED. ``media_kind`` is the track's kind ("audio"/"video"); it is
    reported in upper case for outbound tracks too (BUG 9 fixed: outbound always said AUDIO)."""
    out: dict[str, Any] = {
        "streamDirection": StreamDirection(direction).value,
        "mediaKind": media_kind.upper() if media_kind else None,
        "sfuStreamId": _id(sfu_stream_id),
    }
    if direction == StreamDirection.INBOUND:
        out["sfuSinkId"] = _id(sfu_sink_id)
    return out


def sfu_transport_attachments(internal: bool | None) -> dict[str, Any]:
    return {"internal": bool(internal)}


def sfu_rtp_pad_attachments(direction: StreamDirection, internal: bool | None) -> dict[str, Any]:
    return {"streamDirection": StreamDirection(direction).value, "internal": bool(internal)}


def time_zone_id(offset: Any) -> str | None:
    """The zone offset id ("+01:00", "-05:00", "Z") for a sample's ``timeZoneOffsetInHours``.

    The field is documented as hours but client-monitor-js sends ``Date.getTimezoneOffset()``:
    minutes, positive *west* of UTC (Berlin in winter sends -60). Real zone offsets in minutes are
    never within ±14 (except 0), and real hour offsets are always within ±14, so:
    - |offset| <= 14: hours east of UTC, as documented (fractions allowed: 5.5 -> "+05:30");
    - otherwise: minutes as getTimezoneOffset() gives them, i.e. the sign is flipped
      (-60 -> "+01:00", 300 -> "-05:00", -540 -> "+09:00").
    The reference implementation took minutes without flipping the sign (BUG 13). None when the
    offset is missing, not a number or beyond ±18:00.
    """
    if offset is None or isinstance(offset, bool):
        return None
    if isinstance(offset, str):
        try:
            offset = float(offset)
        except ValueError:
            return None
    if not isinstance(offset, int | float) or not math.isfinite(offset):
        return None
    minutes = round(offset * 60) if abs(offset) <= 14 else -round(offset)
    if minutes == 0:
        return "Z"
    if abs(minutes) > 18 * 60:
        return None
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


# --------------------------------------------------------------------------------------------

def _id(value: str | None) -> str | None:
    return None if value == "" else value


def _report(report_type: ReportType, values: Mapping[str, Any]) -> Report:
    payload = conform(report_type, values)
    if payload is None:
        raise ValueError(f"{report_type.value} needs serviceId, timestamp and name: {dict(values)!r}")
    return Report(report_type, payload)
