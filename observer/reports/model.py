"""The report envelope every sink receives: ``{type, schemaVersion, payload}``."""

from __future__ import annotations

import enum
from typing import Any

import attrs
import orjson

SCHEMA_VERSION = "2.2.0"


class ReportType(enum.StrEnum):
    OBSERVER_EVENT = "OBSERVER_EVENT"
    CALL_EVENT = "CALL_EVENT"
    CALL_META_DATA = "CALL_META_DATA"
    CLIENT_EXTENSION_DATA = "CLIENT_EXTENSION_DATA"
    PEER_CONNECTION_TRANSPORT = "PEER_CONNECTION_TRANSPORT"
    ICE_CANDIDATE_PAIR = "ICE_CANDIDATE_PAIR"
    PEER_CONNECTION_DATA_CHANNEL = "PEER_CONNECTION_DATA_CHANNEL"
    INBOUND_AUDIO_TRACK = "INBOUND_AUDIO_TRACK"
    INBOUND_VIDEO_TRACK = "INBOUND_VIDEO_TRACK"
    OUTBOUND_AUDIO_TRACK = "OUTBOUND_AUDIO_TRACK"
    OUTBOUND_VIDEO_TRACK = "OUTBOUND_VIDEO_TRACK"
    SFU_EVENT = "SFU_EVENT"
    SFU_META_DATA = "SFU_META_DATA"
    SFU_EXTENSION_DATA = "SFU_EXTENSION_DATA"
    SFU_TRANSPORT = "SFU_TRANSPORT"
    SFU_INBOUND_RTP_PAD = "SFU_INBOUND_RTP_PAD"
    SFU_OUTBOUND_RTP_PAD = "SFU_OUTBOUND_RTP_PAD"
    SFU_SCTP_STREAM = "SFU_SCTP_STREAM"


# report type -> the name of its schema file in shared/schemas/reports (and csv header file)
SCHEMA_NAME: dict[ReportType, str] = {
    ReportType.OBSERVER_EVENT: "ObserverEventReport",
    ReportType.CALL_EVENT: "CallEventReport",
    ReportType.CALL_META_DATA: "CallMetaReport",
    ReportType.CLIENT_EXTENSION_DATA: "ClientExtensionReport",
    ReportType.PEER_CONNECTION_TRANSPORT: "PeerConnectionTransportReport",
    ReportType.ICE_CANDIDATE_PAIR: "IceCandidatePairReport",
    ReportType.PEER_CONNECTION_DATA_CHANNEL: "ClientDataChannelReport",
    ReportType.INBOUND_AUDIO_TRACK: "InboundAudioTrackReport",
    ReportType.INBOUND_VIDEO_TRACK: "InboundVideoTrackReport",
    ReportType.OUTBOUND_AUDIO_TRACK: "OutboundAudioTrackReport",
    ReportType.OUTBOUND_VIDEO_TRACK: "OutboundVideoTrackReport",
    ReportType.SFU_EVENT: "SfuEventReport",
    ReportType.SFU_META_DATA: "SfuMetaReport",
    ReportType.SFU_EXTENSION_DATA: "SfuExtensionReport",
    ReportType.SFU_TRANSPORT: "SFUTransportReport",
    ReportType.SFU_INBOUND_RTP_PAD: "SfuInboundRtpPadReport",
    ReportType.SFU_OUTBOUND_RTP_PAD: "SfuOutboundRtpPadReport",
    ReportType.SFU_SCTP_STREAM: "SfuSctpStreamReport",
}

# the per-sink `reports:` filter flag of each type (spec/observer.md §7.1)
FILTER_FLAG: dict[ReportType, str] = {
    ReportType.OBSERVER_EVENT: "sendObserverEvents",
    ReportType.CALL_EVENT: "sendCallEvents",
    ReportType.CALL_META_DATA: "sendCallMeta",
    ReportType.CLIENT_EXTENSION_DATA: "sendClientExtensions",
    ReportType.PEER_CONNECTION_TRANSPORT: "sendPeerConnectionTransports",
    ReportType.ICE_CANDIDATE_PAIR: "sendIceCandidatePairs",
    ReportType.PEER_CONNECTION_DATA_CHANNEL: "sendClientDataChannels",
    ReportType.INBOUND_AUDIO_TRACK: "sendInboundAudioTracks",
    ReportType.INBOUND_VIDEO_TRACK: "sendInboundVideoTracks",
    ReportType.OUTBOUND_AUDIO_TRACK: "sendOutboundAudioTracks",
    ReportType.OUTBOUND_VIDEO_TRACK: "sendOutboundVideoTracks",
    ReportType.SFU_EVENT: "sendSfuEvents",
    ReportType.SFU_META_DATA: "sendSfuMeta",
    ReportType.SFU_EXTENSION_DATA: "sendSfuExtensions",
    ReportType.SFU_TRANSPORT: "sendSfuTransports",
    ReportType.SFU_INBOUND_RTP_PAD: "sendSfuInboundRtpStreams",
    ReportType.SFU_OUTBOUND_RTP_PAD: "sendSfuOutboundRtpStreams",
    ReportType.SFU_SCTP_STREAM: "sendSfuSctpStreams",
}


@attrs.define(slots=True)
class Report:
    """One report. ``payload`` is a plain dict whose keys and value types follow the
    report's .avsc schema (camelCase names, ints stay ints, absent optional fields None).

    Treat as immutable. It is not attrs-frozen because the observer creates about 13 per client
    sample and a frozen instance costs about two and a half times as much to create (every field
    goes through ``object.__setattr__``); the payload dict was never immutable anyway.
    """

    type: ReportType
    payload: dict[str, Any]
    schema_version: str = SCHEMA_VERSION

    def to_envelope(self) -> dict[str, Any]:
        return {"type": self.type.value, "schemaVersion": self.schema_version, "payload": self.payload}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_envelope())

    # ids sinks use for keys / prefixes / collections
    @property
    def service_id(self) -> str | None:
        return self.payload.get("serviceId")

    @property
    def call_id(self) -> str | None:
        return self.payload.get("callId")

    @property
    def sfu_id(self) -> str | None:
        return self.payload.get("sfuId")
