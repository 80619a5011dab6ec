"""Reports built from one SfuSample (spec/observer.md §2.5, §7.2).

Output order: transports, inbound pads, outbound pads, SCTP streams, extension stats, custom events.
Elements with ``noReport=true`` get no report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observer.reports.elements import elements
from observer.reports.enrichment import PadEnrichment
from observer.reports.model import Report, ReportType
from observer.reports.schema import (
    ISSUES,
    FieldSpec,
    PayloadFn,
    Source,
    compile_payload,
    compile_report,
    to_bool,
)

SAMPLE_SCHEMA = "SfuSample"

_CONTEXT_FIELDS = (
    FieldSpec("serviceId", "string", True),
    FieldSpec("mediaUnitId", "string", False),
    FieldSpec("sfuId", "string", True),
    FieldSpec("marker", "string", False),
    FieldSpec("timestamp", "long", True),
)
_CONTEXT_NAMES = tuple(f.name for f in _CONTEXT_FIELDS)
_build_context = compile_payload(SAMPLE_SCHEMA, _CONTEXT_FIELDS, {
    "serviceId": (("ex", "serviceId"),),
    "mediaUnitId": (("ex", "mediaUnitId"),),
})


def _compile(report_type: ReportType, extra: Mapping[str, Source] | None = None) -> PayloadFn:
    return compile_report(report_type, _CONTEXT_NAMES, extra)


_NOT_SET_BY_SFU: dict[str, Source] = {"callId": (), "roomId": ()}

_build_transport = _compile(ReportType.SFU_TRANSPORT, _NOT_SET_BY_SFU)
_build_inbound_pad = _compile(ReportType.SFU_INBOUND_RTP_PAD, {
    "sfuStreamId": (("el", "streamId"),),
    "rtpPadId": (("el", "padId"),),
    "callId": (("ex", "callId"),),
    "clientId": (("ex", "clientId"),),
    "trackId": (("ex", "trackId"),),
    "remoteSfuId": (("ex", "remoteSfuId"),),
    "remoteTransportId": (("ex", "remoteTransportId"),),
    "remoteSinkId": (("ex", "remoteSinkId"),),
    "remoteRtpPadId": (("ex", "remoteRtpPadId"),),
})
_build_outbound_pad = _compile(ReportType.SFU_OUTBOUND_RTP_PAD, {
    "sfuStreamId": (("el", "streamId"),),
    "sfuSinkId": (("el", "sinkId"),),
    "rtpPadId": (("el", "padId"),),
    # the subscriber's ids found by the observer (BUG 4 fixed); the SFU's own values otherwise
    "callId": (("ex", "callId"), ("el", "callId")),
    "clientId": (("ex", "clientId"), ("el", "clientId")),
    "trackId": (("ex", "trackId"), ("el", "trackId")),
})
_build_sctp_stream = _compile(ReportType.SFU_SCTP_STREAM, _NOT_SET_BY_SFU)
_build_extension = _compile(ReportType.SFU_EXTENSION_DATA, {"extensionType": (("el", "type"),)})
_build_custom_event = _compile(ReportType.SFU_EVENT, {
    "timestamp": (("el", "timestamp"), ("ctx", "timestamp")),
    "callId": (),
    # sfuId comes from the context and the stream id is copied (BUG 9 fixed)
    "mediaStreamId": (("el", "sfuStreamId"),),
    "mediaSinkId": (("el", "sfuSinkId"),),
    "sctpStreamId": (),
    "rtpPadId": (),
})

_EMPTY: Mapping[str, Any] = {}

# module constants: an enum member lookup costs a metaclass attribute access per report
_TRANSPORT = ReportType.SFU_TRANSPORT
_INBOUND_PAD = ReportType.SFU_INBOUND_RTP_PAD
_OUTBOUND_PAD = ReportType.SFU_OUTBOUND_RTP_PAD
_SCTP_STREAM = ReportType.SFU_SCTP_STREAM
_EXTENSION = ReportType.SFU_EXTENSION_DATA
_CUSTOM_EVENT = ReportType.SFU_EVENT


def build_sfu_reports(
    sample: Mapping[str, Any],
    *,
    service_id: str,
    media_unit_id: str | None,
    pad_enrichment: Mapping[str, PadEnrichment] | None = None,
    drop_unmatched_internal_inbound: bool = False,
) -> list[Report]:
    """All reports derived from one SfuSample.

    ``pad_enrichment`` maps padId -> the call/client/track the pad carries (inbound and outbound
    pads) and, for internal inbound pads, the matched remote SFU pad. With
    ``drop_unmatched_internal_inbound`` an internal inbound pad without a remote match gets no
    report (counted).
    """
    ctx = _build_context(sample, _EMPTY, {"serviceId": service_id, "mediaUnitId": media_unit_id})
    if ctx is None:
        return []
    reports: list[Report] = []
    append = reports.append
    enrichment = pad_enrichment or _EMPTY

    for el in elements(sample, "transports", SAMPLE_SCHEMA):
        no_report = el.get("noReport")
        if no_report is not None and _is_true(no_report):
            continue
        payload = _build_transport(el, ctx, _EMPTY)
        if payload is not None:
            append(Report(_TRANSPORT, payload))

    for el in elements(sample, "inboundRtpPads", SAMPLE_SCHEMA):
        no_report = el.get("noReport")
        if no_report is not None and _is_true(no_report):
            continue
        pad_id = el.get("padId")
        found = enrichment.get(pad_id) if pad_id.__class__ is str else None
        if (drop_unmatched_internal_inbound and _is_true(el.get("internal"))
                and (found is None or not found.has_remote)):
            ISSUES.report_dropped(_INBOUND_PAD.value,
                                  "unmatched internal inbound pad (dropUnmatchedInternalInboundReports)")
            continue
        ex: Mapping[str, Any] = _EMPTY if found is None else {
            "callId": found.call_id,
            "clientId": found.client_id,
            "trackId": found.track_id,
            "remoteSfuId": found.remote_sfu_id,
            "remoteTransportId": found.remote_transport_id,
            "remoteSinkId": found.remote_sink_id,
            "remoteRtpPadId": found.remote_rtp_pad_id,
        }
        payload = _build_inbound_pad(el, ctx, ex)
        if payload is not None:
            append(Report(_INBOUND_PAD, payload))

    for el in elements(sample, "outboundRtpPads", SAMPLE_SCHEMA):
        no_report = el.get("noReport")
        if no_report is not None and _is_true(no_report):
            continue
        pad_id = el.get("padId")
        found = enrichment.get(pad_id) if pad_id.__class__ is str else None
        ex = _EMPTY if found is None else {
            "callId": found.call_id,
            "clientId": found.client_id,
            "trackId": found.track_id,
        }
        payload = _build_outbound_pad(el, ctx, ex)
        if payload is not None:
            append(Report(_OUTBOUND_PAD, payload))

    for el in elements(sample, "sctpChannels", SAMPLE_SCHEMA):
        no_report = el.get("noReport")
        if no_report is not None and _is_true(no_report):
            continue
        payload = _build_sctp_stream(el, ctx, _EMPTY)
        if payload is not None:
            append(Report(_SCTP_STREAM, payload))

    for el in elements(sample, "extensionStats", SAMPLE_SCHEMA):
        payload = _build_extension(el, ctx, _EMPTY)
        if payload is not None:
            append(Report(_EXTENSION, payload))

    for el in elements(sample, "customSfuEvents", SAMPLE_SCHEMA):
        payload = _build_custom_event(el, ctx, _EMPTY)
        if payload is not None:
            append(Report(_CUSTOM_EVENT, payload))
    return reports


def _is_true(value: Any) -> bool:
    return value is True or (value is not None and to_bool(value) is True)
