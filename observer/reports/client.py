"""Reports built from one ClientSample (spec/observer.md §2.4, §7.2).

The sample is a plain dict with the Avro camelCase names; stats values are coerced to the report
schema types (see observer.reports.schema). Output order follows the reference implementation:
transports, ICE pairs, inbound audio, inbound video, outbound audio, outbound video, data channels,
CALL_META_DATA, CLIENT_EXTENSION_DATA, custom CALL_EVENTs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import orjson

from observer.reports.elements import elements
from observer.reports.enrichment import RemoteTrack
from observer.reports.model import Report, ReportType
from observer.reports.schema import (
    ISSUES,
    FieldSpec,
    PayloadFn,
    Source,
    compile_payload,
    compile_report,
    sample_record_fields,
    to_str,
)

SAMPLE_SCHEMA = "ClientSample"


class CallMetaType(enum.StrEnum):
    CERTIFICATE = "CERTIFICATE"
    CODEC = "CODEC"
    ICE_LOCAL_CANDIDATE = "ICE_LOCAL_CANDIDATE"
    ICE_REMOTE_CANDIDATE = "ICE_REMOTE_CANDIDATE"
    ICE_SERVER = "ICE_SERVER"
    MEDIA_CONSTRAINT = "MEDIA_CONSTRAINT"
    MEDIA_DEVICE = "MEDIA_DEVICE"
    MEDIA_SOURCE = "MEDIA_SOURCE"
    USER_MEDIA_ERROR = "USER_MEDIA_ERROR"
    LOCAL_SDP = "LOCAL_SDP"
    OPERATION_SYSTEM = "OPERATION_SYSTEM"
    ENGINE = "ENGINE"
    PLATFORM = "PLATFORM"
    BROWSER = "BROWSER"


# Values every report of a sample shares; coerced once per sample.
_CONTEXT_FIELDS = (
    FieldSpec("serviceId", "string", True),
    FieldSpec("mediaUnitId", "string", False),
    FieldSpec("marker", "string", False),
    FieldSpec("timestamp", "long", True),
    FieldSpec("callId", "string", True),
    FieldSpec("roomId", "string", False),
    FieldSpec("clientId", "string", True),
    FieldSpec("userId", "string", False),
    FieldSpec("sampleSeq", "int", False),
)
_CONTEXT_NAMES = tuple(f.name for f in _CONTEXT_FIELDS)
_build_context = compile_payload(SAMPLE_SCHEMA, _CONTEXT_FIELDS, {
    "serviceId": (("ex", "serviceId"),),
    "mediaUnitId": (("ex", "mediaUnitId"),),
    "callId": (("ex", "callId"),),
})


def _compile(report_type: ReportType, extra: Mapping[str, Source] | None = None) -> PayloadFn:
    return compile_report(report_type, _CONTEXT_NAMES, extra)


_LABEL: dict[str, Source] = {"label": (("ex", "label"),)}
_REMOTE: dict[str, Source] = {
    "remoteTrackId": (("ex", "remoteTrackId"),),
    "remoteUserId": (("ex", "remoteUserId"),),
    # the client's own claim is kept when the observer found no match
    "remoteClientId": (("ex", "remoteClientId"), ("el", "remoteClientId")),
    "remotePeerConnectionId": (("ex", "remotePeerConnectionId"),),
}

_build_transport = _compile(ReportType.PEER_CONNECTION_TRANSPORT, _LABEL)
_build_ice_pair = _compile(ReportType.ICE_CANDIDATE_PAIR, _LABEL)
_build_inbound_audio = _compile(ReportType.INBOUND_AUDIO_TRACK, {**_LABEL, **_REMOTE})
_build_inbound_video = _compile(ReportType.INBOUND_VIDEO_TRACK, {**_LABEL, **_REMOTE})
_build_outbound_audio = _compile(ReportType.OUTBOUND_AUDIO_TRACK, _LABEL)
_build_outbound_video = _compile(ReportType.OUTBOUND_VIDEO_TRACK, _LABEL)
_build_data_channel = _compile(ReportType.PEER_CONNECTION_DATA_CHANNEL, {
    "peerConnectionLabel": (("ex", "label"),),
    # the sample schema says messageSent/messageReceived, W3C stats (what monitors copy) say messages*
    "messagesSent": (("el", "messageSent"), ("el", "messagesSent")),
    "messagesReceived": (("el", "messageReceived"), ("el", "messagesReceived")),
})
_build_extension = _compile(ReportType.CLIENT_EXTENSION_DATA, {
    "extensionType": (("el", "type"),),
    "peerConnectionId": (),
})
_build_custom_event = _compile(ReportType.CALL_EVENT, {
    "timestamp": (("el", "timestamp"), ("ctx", "timestamp")),
    "sampleTimestamp": (("ctx", "timestamp"),),
    "SSRC": (),
})

# CALL_META_DATA payloads: JSON of the sample sub-object, with exactly its schema fields
_META_OBJECTS: tuple[tuple[str, CallMetaType, str], ...] = (
    ("os", CallMetaType.OPERATION_SYSTEM, "OperationSystem"),
    ("engine", CallMetaType.ENGINE, "Engine"),
    ("platform", CallMetaType.PLATFORM, "Platform"),
    ("browser", CallMetaType.BROWSER, "Browser"),
)
_META_LISTS: tuple[tuple[str, CallMetaType, str], ...] = (
    ("certificates", CallMetaType.CERTIFICATE, "Certificate"),
    ("codecs", CallMetaType.CODEC, "MediaCodecStats"),
    ("iceLocalCandidates", CallMetaType.ICE_LOCAL_CANDIDATE, "IceLocalCandidate"),
    ("iceRemoteCandidates", CallMetaType.ICE_REMOTE_CANDIDATE, "IceRemoteCandidate"),
    ("mediaDevices", CallMetaType.MEDIA_DEVICE, "MediaDevice"),
    ("mediaSources", CallMetaType.MEDIA_SOURCE, "MediaSourceStat"),
)
_META_STRINGS: tuple[tuple[str, CallMetaType], ...] = (
    ("iceServers", CallMetaType.ICE_SERVER),
    ("mediaConstraints", CallMetaType.MEDIA_CONSTRAINT),
    ("userMediaErrors", CallMetaType.USER_MEDIA_ERROR),
)
_ICE_CANDIDATE_LISTS = frozenset({"iceLocalCandidates", "iceRemoteCandidates"})
_meta_builders: dict[str, PayloadFn] = {
    record: compile_payload(record, sample_record_fields(record))
    for _, _, record in _META_OBJECTS + _META_LISTS
}

_EMPTY: Mapping[str, Any] = {}
_META = ReportType.CALL_META_DATA
# sample keys that yield reports only now and then (meta data on a client's first samples, extension
# stats, custom events): one set test skips all of them for a steady-state sample
RARE_SAMPLE_KEYS = frozenset(
    [key for key, _, _ in _META_OBJECTS + _META_LISTS] + [key for key, _ in _META_STRINGS]
    + ["localSDPs", "extensionStats", "customCallEvents"]
)

# module constants: an enum member lookup costs a metaclass attribute access per report
_LABELLED = (  # elements that carry their PC's label themselves (or get it from a sibling)
    ("pcTransports", _build_transport, ReportType.PEER_CONNECTION_TRANSPORT),
    ("iceCandidatePairs", _build_ice_pair, ReportType.ICE_CANDIDATE_PAIR),
)
_INBOUND = (
    ("inboundAudioTracks", _build_inbound_audio, ReportType.INBOUND_AUDIO_TRACK),
    ("inboundVideoTracks", _build_inbound_video, ReportType.INBOUND_VIDEO_TRACK),
)
_OUTBOUND = (
    ("outboundAudioTracks", _build_outbound_audio, ReportType.OUTBOUND_AUDIO_TRACK),
    ("outboundVideoTracks", _build_outbound_video, ReportType.OUTBOUND_VIDEO_TRACK),
)
_DATA_CHANNEL = ReportType.PEER_CONNECTION_DATA_CHANNEL
_EXTENSION = ReportType.CLIENT_EXTENSION_DATA
_CUSTOM_EVENT = ReportType.CALL_EVENT


def build_client_reports(
    sample: Mapping[str, Any],
    *,
    service_id: str,
    media_unit_id: str | None,
    call_id: str | None,
    matches: Mapping[str, RemoteTrack] | None = None,
    drop_unmatched_inbound: bool = False,
) -> list[Report]:
    """All reports derived from one ClientSample.

    ``call_id`` is the call the pipeline assigned; without one the sample yields no reports
    (counted), which keeps one unassigned sample from affecting any other sample (BUG 2 fixed).
    ``matches`` maps inbound trackId -> the matched remote outbound track; with
    ``drop_unmatched_inbound`` inbound track reports without a match are dropped (counted).
    Elements that lack a required report field (e.g. an SSRC) are dropped one by one (counted).
    """
    ctx = _build_context(sample, _EMPTY,
                         {"serviceId": service_id, "mediaUnitId": media_unit_id, "callId": call_id})
    if ctx is None:
        return []
    reports: list[Report] = []
    append = reports.append
    labels = _peer_connection_labels(sample)

    for key, build, report_type in _LABELLED:
        for el in elements(sample, key, SAMPLE_SCHEMA):
            label = el.get("label")
            if not label:
                pc_id = el.get("peerConnectionId")
                label = labels.get(pc_id) if pc_id.__class__ is str else None
            payload = build(el, ctx, {"label": label})
            if payload is not None:
                append(Report(report_type, payload))

    for key, build, report_type in _INBOUND:
        for el in elements(sample, key, SAMPLE_SCHEMA):
            pc_id = el.get("peerConnectionId")
            label = labels.get(pc_id) if pc_id.__class__ is str else None
            track_id = el.get("trackId")
            match = matches.get(track_id) if matches and track_id.__class__ is str else None
            if match is None:
                if drop_unmatched_inbound:
                    ISSUES.report_dropped(report_type.value, "unmatched inbound track (dropUnmatchedReports)")
                    continue
                ex: Mapping[str, Any] = {"label": label}
            else:
                ex = {
                    "label": label,
                    "remoteTrackId": match.track_id,
                    "remoteUserId": match.user_id,
                    "remoteClientId": match.client_id,
                    "remotePeerConnectionId": match.peer_connection_id,
                }
            payload = build(el, ctx, ex)
            if payload is not None:
                append(Report(report_type, payload))

    for key, build, report_type in _OUTBOUND:
        for el in elements(sample, key, SAMPLE_SCHEMA):
            pc_id = el.get("peerConnectionId")
            payload = build(el, ctx, {"label": labels.get(pc_id) if pc_id.__class__ is str else None})
            if payload is not None:
                append(Report(report_type, payload))

    for el in elements(sample, "dataChannels", SAMPLE_SCHEMA):
        pc_id = el.get("peerConnectionId")
        payload = _build_data_channel(el, ctx, {"label": labels.get(pc_id) if pc_id.__class__ is str else None})
        if payload is not None:
            append(Report(_DATA_CHANNEL, payload))

    if not RARE_SAMPLE_KEYS.isdisjoint(sample):
        _append_rare_reports(sample, ctx, append)
    return reports


def _append_rare_reports(sample: Mapping[str, Any], ctx: Mapping[str, Any], append: Any) -> None:
    _append_meta_reports(sample, ctx, append)

    for el in elements(sample, "extensionStats", SAMPLE_SCHEMA):
        payload = _build_extension(el, ctx, _EMPTY)
        if payload is None:
            continue
        if not _is_json(payload["payload"]):
            ISSUES.report_dropped(_EXTENSION.value, "payload is not valid JSON")
            continue
        append(Report(_EXTENSION, payload))

    for el in elements(sample, "customCallEvents", SAMPLE_SCHEMA):
        payload = _build_custom_event(el, ctx, _EMPTY)
        if payload is not None:
            append(Report(_CUSTOM_EVENT, payload))


def _append_meta_reports(sample: Mapping[str, Any], ctx: Mapping[str, Any], append: Any) -> None:
    ts = ctx["timestamp"]
    # CallMetaReport field order
    base = {
        "serviceId": ctx["serviceId"], "mediaUnitId": ctx["mediaUnitId"], "marker": ctx["marker"],
        "timestamp": ts, "callId": ctx["callId"], "roomId": ctx["roomId"], "clientId": ctx["clientId"],
        "userId": ctx["userId"], "peerConnectionId": None, "sampleTimestamp": ts,
        "sampleSeq": ctx["sampleSeq"], "type": None, "payload": None,
    }

    def add(meta_type: CallMetaType, text: str, peer_connection_id: Any = None) -> None:
        payload = dict(base)
        payload["type"] = meta_type.value
        payload["payload"] = text
        if peer_connection_id is not None:
            payload["peerConnectionId"] = to_str(peer_connection_id)
        append(Report(_META, payload))

    for key, meta_type, record in _META_OBJECTS:
        obj = sample.get(key)
        if obj is None:
            continue
        if obj.__class__ is not dict:
            ISSUES.report_dropped(_META.value, f"{key} is not an object")
            continue
        add(meta_type, _json(_meta_builders[record](obj, _EMPTY, _EMPTY)))
    for key, meta_type, record in _META_LISTS:
        build = _meta_builders[record]
        with_pc = key in _ICE_CANDIDATE_LISTS
        for el in elements(sample, key, SAMPLE_SCHEMA):
            add(meta_type, _json(build(el, _EMPTY, _EMPTY)), el.get("peerConnectionId") if with_pc else None)
    for key, meta_type in _META_STRINGS:
        for text in _strings(sample, key):
            add(meta_type, text)
    sdps = _strings(sample, "localSDPs")
    if sdps:
        add(CallMetaType.LOCAL_SDP, "\n".join(sdps))


def _peer_connection_labels(sample: Mapping[str, Any]) -> dict[str, str]:
    """pcId -> the PC's label, from its transports or ICE candidate pairs (first one wins)."""
    labels: dict[str, str] = {}
    for key in ("pcTransports", "iceCandidatePairs"):
        items = sample.get(key)
        if items.__class__ is not list:  # reported (and counted) by the report loops
            continue
        for el in items:
            if el.__class__ is not dict:
                continue
            label = el.get("label")
            if not label:
                continue
            pc_id = el.get("peerConnectionId")
            if pc_id.__class__ is str and pc_id not in labels:
                text = label if label.__class__ is str else to_str(label)
                if text is not None:
                    labels[pc_id] = text
    return labels


def _strings(sample: Mapping[str, Any], key: str) -> list[str]:
    items = sample.get(key)
    if not items:
        return []
    if items.__class__ is not list:
        ISSUES.report_dropped(SAMPLE_SCHEMA, f"{key} is not a list")
        return []
    out = []
    for item in items:
        text = item if item.__class__ is str else to_str(item)
        if text is None:
            if item is not None:
                ISSUES.report_dropped(_META.value, f"{key} has an element that is not a string")
            continue
        out.append(text)
    return out


def _json(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _is_json(text: str | None) -> bool:
    if text is None:
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
