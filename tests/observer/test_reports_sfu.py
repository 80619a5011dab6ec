"""build_sfu_reports: renamed fields, pad enrichment, noReport, custom SFU events, bug fixes."""

from __future__ import annotations

from typing import Any

import pytest

from observer.reports.enrichment import PadEnrichment
from observer.reports.model import Report, ReportType
from observer.reports.schema import ISSUES
from observer.reports.sfu import build_sfu_reports
from tests.observer.test_reports_conformance import assert_conforms, decoded_frame, manifest

SFU_PLAIN = "sfu-json/004-sfu1-json-rest.bin"
SFU_CUSTOM = "sfu-json/008-sfu1-json-rest.bin"


def _sample(file: str = SFU_PLAIN) -> dict[str, Any]:
    _, sfus = decoded_frame(file)
    return sfus[0]


def _build(sample: dict[str, Any], **kw: Any) -> list[Report]:
    kw.setdefault("service_id", "svc")
    kw.setdefault("media_unit_id", "sfu-unit")
    return build_sfu_reports(sample, **kw)


def _of(reports: list[Report], report_type: ReportType) -> list[Report]:
    return [r for r in reports if r.type is report_type]


def _pad_matches() -> dict[str, Any]:
    return manifest()["scenarios"]["sfu-json"]["expected"]["sfuPadMatches"]


def _enrichment_from_manifest(call_id: str) -> dict[str, PadEnrichment]:
    out = {}
    for pads in _pad_matches().values():
        for pad in pads:
            out[pad["padId"]] = PadEnrichment(
                call_id=call_id, client_id=pad["expect"]["clientId"], track_id=pad["expect"]["trackId"]
            )
    return out


def test_common_fields_and_renames() -> None:
    sample = _sample()
    reports = _build(sample)
    for r in reports:
        assert (r.payload["serviceId"], r.payload["mediaUnitId"]) == ("svc", "sfu-unit")
        assert r.payload["sfuId"] == sample["sfuId"]
        assert r.payload["timestamp"] == sample["timestamp"]
    pad = sample["outboundRtpPads"][0]
    (out,) = [
        r for r in _of(reports, ReportType.SFU_OUTBOUND_RTP_PAD) if r.payload["rtpPadId"] == pad["padId"]
    ]
    assert (out.payload["sfuStreamId"], out.payload["sfuSinkId"], out.payload["ssrc"]) == (
        pad["streamId"],
        pad["sinkId"],
        pad["ssrc"],
    )
    pad = sample["inboundRtpPads"][0]
    (inb,) = [
        r for r in _of(reports, ReportType.SFU_INBOUND_RTP_PAD) if r.payload["rtpPadId"] == pad["padId"]
    ]
    assert inb.payload["sfuStreamId"] == pad["streamId"]
    channel = sample["sctpChannels"][0]
    sctp = _of(reports, ReportType.SFU_SCTP_STREAM)[0].payload
    assert (sctp["streamId"], sctp["label"]) == (channel["streamId"], channel["label"])
    assert "channelId" not in sctp and sctp["callId"] is None
    transport = _of(reports, ReportType.SFU_TRANSPORT)[0].payload
    assert transport["transportId"] == sample["transports"][0]["transportId"]
    assert (transport["callId"], transport["roomId"]) == (None, None)


def test_pads_without_enrichment_have_no_owner() -> None:
    reports = _build(_sample())
    for r in _of(reports, ReportType.SFU_INBOUND_RTP_PAD) + _of(reports, ReportType.SFU_OUTBOUND_RTP_PAD):
        assert (r.payload["callId"], r.payload["clientId"], r.payload["trackId"]) == (None, None, None)


def test_inbound_pads_get_the_publisher_from_the_enrichment() -> None:
    reports = _build(_sample(), pad_enrichment=_enrichment_from_manifest("call-9"))
    by_pad = {r.payload["rtpPadId"]: r.payload for r in _of(reports, ReportType.SFU_INBOUND_RTP_PAD)}
    for pad in _pad_matches()["inboundPads"]:
        p = by_pad[pad["padId"]]
        assert (p["callId"], p["clientId"], p["trackId"]) == (
            "call-9",
            pad["expect"]["clientId"],
            pad["expect"]["trackId"],
        )


def test_bug_4_outbound_pads_get_the_subscriber_and_nothing_leaks_into_inbound_pads() -> None:
    sample = _sample()
    outbound_only = {
        p["padId"]: PadEnrichment(
            call_id="call-9", client_id=p["expect"]["clientId"], track_id=p["expect"]["trackId"]
        )
        for p in _pad_matches()["outboundPads"]
    }
    assert outbound_only
    reports = _build(sample, pad_enrichment=outbound_only)
    by_pad = {r.payload["rtpPadId"]: r.payload for r in _of(reports, ReportType.SFU_OUTBOUND_RTP_PAD)}
    for pad in _pad_matches()["outboundPads"]:
        p = by_pad[pad["padId"]]
        assert (p["callId"], p["clientId"], p["trackId"]) == (
            "call-9",
            pad["expect"]["clientId"],
            pad["expect"]["trackId"],
        )
    for r in _of(reports, ReportType.SFU_INBOUND_RTP_PAD):
        assert (r.payload["callId"], r.payload["clientId"], r.payload["trackId"]) == (None, None, None)


def test_outbound_pad_keeps_the_sfus_own_ids_when_the_observer_knows_none() -> None:
    sample = _sample()
    sample["outboundRtpPads"][0].update(callId="sfu-call", clientId="sfu-client", trackId="sfu-track")
    first = _of(_build(sample), ReportType.SFU_OUTBOUND_RTP_PAD)[0].payload
    assert (first["callId"], first["clientId"], first["trackId"]) == ("sfu-call", "sfu-client", "sfu-track")
    enriched = {
        sample["outboundRtpPads"][0]["padId"]: PadEnrichment(
            call_id="obs-call", client_id="obs-client", track_id="obs-track"
        )
    }
    first = _of(_build(sample, pad_enrichment=enriched), ReportType.SFU_OUTBOUND_RTP_PAD)[0].payload
    assert (first["callId"], first["clientId"], first["trackId"]) == ("obs-call", "obs-client", "obs-track")


def _internal_sample() -> dict[str, Any]:
    sample = _sample()
    for pad in sample["inboundRtpPads"][:2]:
        pad["internal"] = True
    return sample


def test_internal_inbound_pads_get_the_remote_pad() -> None:
    sample = _internal_sample()
    first = sample["inboundRtpPads"][0]["padId"]
    enrichment = {
        first: PadEnrichment(
            call_id="c",
            remote_sfu_id="sfu-2",
            remote_transport_id="t-2",
            remote_sink_id="sink-2",
            remote_rtp_pad_id="pad-2",
        )
    }
    reports = _of(_build(sample, pad_enrichment=enrichment), ReportType.SFU_INBOUND_RTP_PAD)
    (p,) = [r.payload for r in reports if r.payload["rtpPadId"] == first]
    assert (
        p["internal"],
        p["remoteSfuId"],
        p["remoteTransportId"],
        p["remoteSinkId"],
        p["remoteRtpPadId"],
    ) == (True, "sfu-2", "t-2", "sink-2", "pad-2")
    assert len(reports) == 6


def test_drop_unmatched_internal_inbound_drops_only_unmatched_internal_pads() -> None:
    sample = _internal_sample()
    first = sample["inboundRtpPads"][0]["padId"]
    enrichment = {first: PadEnrichment(remote_sfu_id="sfu-2", remote_rtp_pad_id="pad-2")}
    before = sum(
        n for (s, reason), n in ISSUES.dropped.items() if s == "SFU_INBOUND_RTP_PAD" and "internal" in reason
    )
    reports = _of(
        _build(sample, pad_enrichment=enrichment, drop_unmatched_internal_inbound=True),
        ReportType.SFU_INBOUND_RTP_PAD,
    )
    pad_ids = [r.payload["rtpPadId"] for r in reports]
    assert first in pad_ids and sample["inboundRtpPads"][1]["padId"] not in pad_ids
    assert len(reports) == 5
    after = sum(
        n for (s, reason), n in ISSUES.dropped.items() if s == "SFU_INBOUND_RTP_PAD" and "internal" in reason
    )
    assert after == before + 1


@pytest.mark.parametrize("flag", [True, "true", 1])
def test_no_report_elements_get_no_report(flag: Any) -> None:
    sample = _sample()
    for key in ("transports", "inboundRtpPads", "outboundRtpPads", "sctpChannels"):
        sample[key][0]["noReport"] = flag
    sample["transports"][1]["noReport"] = False
    reports = _build(sample)
    assert len(_of(reports, ReportType.SFU_TRANSPORT)) == 5
    assert len(_of(reports, ReportType.SFU_INBOUND_RTP_PAD)) == 5
    assert len(_of(reports, ReportType.SFU_OUTBOUND_RTP_PAD)) == 11
    assert len(_of(reports, ReportType.SFU_SCTP_STREAM)) == 8
    assert sample["inboundRtpPads"][0]["padId"] not in {
        r.payload["rtpPadId"] for r in _of(reports, ReportType.SFU_INBOUND_RTP_PAD)
    }


def test_extension_stats() -> None:
    sample = _sample(SFU_CUSTOM)
    (stat,) = sample["extensionStats"]
    (report,) = _of(_build(sample), ReportType.SFU_EXTENSION_DATA)
    assert (report.payload["extensionType"], report.payload["payload"]) == (stat["type"], stat["payload"])
    assert report.payload["sfuId"] == sample["sfuId"]


def test_bug_9_custom_sfu_events_carry_sfu_id_and_media_stream_id() -> None:
    sample = _sample(SFU_CUSTOM)
    events = sample["customSfuEvents"]
    reports = _of(_build(sample), ReportType.SFU_EVENT)
    assert len(reports) == len(events) == 2
    for event, report in zip(events, reports, strict=True):
        p = report.payload
        assert p["sfuId"] == sample["sfuId"]
        assert p["mediaStreamId"] == event["sfuStreamId"]
        assert p["mediaSinkId"] == event.get("sfuSinkId")
        assert p["transportId"] == event["transportId"]
        assert (p["name"], p["value"], p["message"], p["attachments"]) == (
            event["name"],
            event.get("value"),
            event.get("message"),
            event["attachments"],
        )
        assert p["timestamp"] == event["timestamp"]
        assert_conforms(report)


def test_custom_sfu_event_without_timestamp_uses_the_sample_timestamp() -> None:
    sample = _sample(SFU_CUSTOM)
    sample["timestamp"] += 5
    del sample["customSfuEvents"][0]["timestamp"]
    first = _of(_build(sample), ReportType.SFU_EVENT)[0]
    assert first.payload["timestamp"] == sample["timestamp"]


def test_sample_without_sfu_id_yields_nothing() -> None:
    sample = _sample()
    del sample["sfuId"]
    assert _build(sample) == []


def test_malformed_elements_are_skipped() -> None:
    sample = _sample()
    sample["transports"].append("garbage")
    sample["sctpChannels"] = "not a list"
    sample["inboundRtpPads"][0]["padId"] = None  # required rtpPadId
    sample["outboundRtpPads"][0]["padId"] = ["unhashable"]
    reports = _build(sample, pad_enrichment={"x": PadEnrichment()})
    assert len(_of(reports, ReportType.SFU_TRANSPORT)) == 6
    assert _of(reports, ReportType.SFU_SCTP_STREAM) == []
    assert len(_of(reports, ReportType.SFU_INBOUND_RTP_PAD)) == 5
    assert len(_of(reports, ReportType.SFU_OUTBOUND_RTP_PAD)) == 12
    for r in reports:
        assert_conforms(r)
