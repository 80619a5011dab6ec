"""Which object a report belongs to: call or SFU side, and the id that places it in that hierarchy."""

from __future__ import annotations

from observer.reports.model import Report, ReportType

SFU_REPORT_TYPES = frozenset({
    ReportType.SFU_EVENT, ReportType.SFU_META_DATA, ReportType.SFU_EXTENSION_DATA, ReportType.SFU_TRANSPORT,
    ReportType.SFU_INBOUND_RTP_PAD, ReportType.SFU_OUTBOUND_RTP_PAD, ReportType.SFU_SCTP_STREAM,
})

# first non-null of these names the object a report is about (the reference KafkaSink's key order)
_CALL_HIERARCHY = ("callId", "clientId", "peerConnectionId")
_SFU_HIERARCHY = ("callId", "sfuId", "transportId", "rtpPadId")


def is_sfu_report(report: Report) -> bool:
    return report.type in SFU_REPORT_TYPES


def hierarchy_id(report: Report) -> str | None:
    """The most significant id of the report: callId, else clientId/peerConnectionId for call reports,
    sfuId/transportId/rtpPadId for SFU reports (SFU_EXTENSION_DATA only has sfuId)."""
    names = _SFU_HIERARCHY if is_sfu_report(report) else _CALL_HIERARCHY
    for name in names:
        value = report.payload.get(name)
        if value:
            return str(value)
    return None
