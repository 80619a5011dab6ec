"""Event report builders: fields, timestamps, attachments (base64 of JSON), time zone ids, bug fixes."""

from __future__ import annotations

import base64
import datetime
import math
import zoneinfo
from typing import Any

import orjson
import pytest

from observer.reports.events import (
    CallEventName,
    SfuEventName,
    StreamDirection,
    call_event,
    client_attachments,
    decode_attachments,
    encode_attachments,
    lifecycle_timestamp,
    media_track_attachments,
    sfu_event,
    sfu_rtp_pad_attachments,
    sfu_transport_attachments,
    time_zone_id,
)
from observer.reports.model import ReportType
from tests.observer.test_reports_conformance import assert_conforms, decoded_frame, frame_entries, manifest

CALL: dict[str, Any] = {"service_id": "svc", "room_id": "room-1", "call_id": "call-1"}


def test_call_started() -> None:
    report = call_event(CallEventName.CALL_STARTED, **CALL, timestamp=1000, marker="m")
    assert report.type is ReportType.CALL_EVENT
    p = report.payload
    assert (p["name"], p["serviceId"], p["roomId"], p["callId"], p["timestamp"], p["marker"]) == (
        "CALL_STARTED",
        "svc",
        "room-1",
        "call-1",
        1000,
        "m",
    )
    assert p["message"] == "Call (call-1) is started"
    assert p["clientId"] is None and p["attachments"] is None
    assert_conforms(report)


def test_call_ended_message() -> None:
    assert (
        call_event(CallEventName.CALL_ENDED, **CALL, timestamp=1).payload["message"]
        == "Call (call-1) is ended"
    )


def test_client_joined_has_the_time_zone_attachment() -> None:
    report = call_event(
        CallEventName.CLIENT_JOINED,
        **CALL,
        timestamp=5,
        client_id="cl",
        user_id="alice",
        media_unit_id="unit",
        attachments=client_attachments(-60),
    )
    p = report.payload
    assert (p["clientId"], p["userId"], p["mediaUnitId"], p["message"]) == (
        "cl",
        "alice",
        "unit",
        "Client is joined",
    )
    assert decode_attachments(p["attachments"]) == {"timeZoneId": "+01:00"}
    assert orjson.loads(base64.b64decode(p["attachments"])) == {"timeZoneId": "+01:00"}
    assert_conforms(report)


def test_client_left_and_peer_connection_events() -> None:
    left = call_event(
        CallEventName.CLIENT_LEFT, **CALL, timestamp=5, client_id="cl", attachments=client_attachments(None)
    )
    assert left.payload["message"] == "Client left"
    assert decode_attachments(left.payload["attachments"]) == {"timeZoneId": None}
    opened = call_event(
        CallEventName.PEER_CONNECTION_OPENED, **CALL, timestamp=5, client_id="cl", peer_connection_id="pc-1"
    )
    assert opened.payload["peerConnectionId"] == "pc-1"
    assert opened.payload["message"] == "PeerConnection (pc-1) is opened"
    closed = call_event(CallEventName.PEER_CONNECTION_CLOSED, **CALL, timestamp=5, peer_connection_id="pc-1")
    assert closed.payload["message"] == "Peer Connection (pc-1) is closed"


def test_media_track_added_fields() -> None:
    report = call_event(
        CallEventName.MEDIA_TRACK_ADDED,
        **CALL,
        timestamp=7,
        client_id="cl",
        peer_connection_id="pc",
        media_track_id="tr",
        ssrc=2**32 - 1,
        attachments=media_track_attachments(StreamDirection.INBOUND, "audio", "stream-1", "sink-1"),
    )
    p = report.payload
    assert (p["mediaTrackId"], p["SSRC"]) == ("tr", 2**32 - 1)
    assert decode_attachments(p["attachments"]) == {
        "streamDirection": "INBOUND",
        "mediaKind": "AUDIO",
        "sfuStreamId": "stream-1",
        "sfuSinkId": "sink-1",
    }
    assert_conforms(report)


def test_bug_9_outbound_media_track_attachments_carry_the_real_media_kind() -> None:
    attachments = media_track_attachments(StreamDirection.OUTBOUND, "video", "stream-1")
    assert attachments == {"streamDirection": "OUTBOUND", "mediaKind": "VIDEO", "sfuStreamId": "stream-1"}
    report = call_event(
        CallEventName.MEDIA_TRACK_REMOVED, **CALL, timestamp=1, media_track_id="t", attachments=attachments
    )
    assert decode_attachments(report.payload["attachments"])["mediaKind"] == "VIDEO"


def test_bug_12_empty_strings_are_reported_as_null() -> None:
    report = call_event(
        CallEventName.CLIENT_JOINED,
        **CALL,
        timestamp=1,
        client_id="cl",
        user_id="",
        marker="",
        media_unit_id="",
    )
    assert (report.payload["userId"], report.payload["marker"], report.payload["mediaUnitId"]) == (
        None,
        None,
        None,
    )
    attachments = media_track_attachments(StreamDirection.INBOUND, "audio", "", "")
    assert (attachments["sfuStreamId"], attachments["sfuSinkId"]) == (None, None)
    sfu = sfu_event(
        SfuEventName.SFU_RTP_PAD_ADDED,
        service_id="svc",
        sfu_id="sfu",
        timestamp=1,
        media_stream_id="",
        media_sink_id="",
        marker="",
    )
    assert (sfu.payload["mediaStreamId"], sfu.payload["mediaSinkId"], sfu.payload["marker"]) == (
        None,
        None,
        None,
    )


def test_custom_name_message_and_value_pass_through() -> None:
    report = call_event(
        "MY_EVENT", **CALL, timestamp=1, message="hello", value="42", sample_timestamp=2, sample_seq=3
    )
    p = report.payload
    assert (p["name"], p["message"], p["value"], p["sampleTimestamp"], p["sampleSeq"]) == (
        "MY_EVENT",
        "hello",
        "42",
        2,
        3,
    )


@pytest.mark.parametrize("name", list(CallEventName))
def test_every_call_event_conforms_and_has_a_message(name: CallEventName) -> None:
    report = call_event(name, **CALL, timestamp=1, client_id="c", peer_connection_id="p", media_track_id="t")
    assert report.payload["name"] == name.value
    assert report.payload["message"]
    assert_conforms(report)


@pytest.mark.parametrize("name", list(SfuEventName))
def test_every_sfu_event_conforms_and_has_a_message(name: SfuEventName) -> None:
    report = sfu_event(
        name,
        service_id="svc",
        sfu_id="sfu-1",
        timestamp=1,
        transport_id="t",
        rtp_pad_id="p",
        sctp_stream_id="s",
    )
    assert report.type is ReportType.SFU_EVENT
    assert (report.payload["name"], report.payload["sfuId"]) == (name.value, "sfu-1")
    assert report.payload["message"]
    assert_conforms(report)


def test_sfu_events_fields_and_attachments() -> None:
    joined = sfu_event(
        SfuEventName.SFU_JOINED, service_id="svc", sfu_id="sfu-1", timestamp=3, media_unit_id="u"
    )
    assert (joined.payload["message"], joined.payload["mediaUnitId"], joined.payload["callId"]) == (
        "Sfu is joined",
        "u",
        None,
    )
    transport = sfu_event(
        SfuEventName.SFU_TRANSPORT_OPENED,
        service_id="svc",
        sfu_id="sfu-1",
        timestamp=3,
        transport_id="t-1",
        attachments=sfu_transport_attachments(True),
    )
    assert transport.payload["transportId"] == "t-1"
    assert decode_attachments(transport.payload["attachments"]) == {"internal": True}
    pad = sfu_event(
        SfuEventName.SFU_RTP_PAD_ADDED,
        service_id="svc",
        sfu_id="sfu-1",
        timestamp=3,
        transport_id="t-1",
        media_stream_id="st",
        media_sink_id="sk",
        rtp_pad_id="pad",
        attachments=sfu_rtp_pad_attachments(StreamDirection.OUTBOUND, False),
    )
    p = pad.payload
    assert (p["mediaStreamId"], p["mediaSinkId"], p["rtpPadId"]) == ("st", "sk", "pad")
    assert decode_attachments(p["attachments"]) == {"streamDirection": "OUTBOUND", "internal": False}
    sctp = sfu_event(
        SfuEventName.SFU_SCTP_STREAM_ADDED,
        service_id="svc",
        sfu_id="sfu-1",
        timestamp=3,
        transport_id="t-1",
        sctp_stream_id="s-1",
    )
    assert (sctp.payload["sctpStreamId"], sctp.payload["attachments"]) == ("s-1", None)


def test_missing_service_id_or_timestamp_raises() -> None:
    with pytest.raises(ValueError, match="CALL_EVENT"):
        call_event(CallEventName.CALL_STARTED, service_id="", room_id="r", call_id="c", timestamp=1)
    with pytest.raises(ValueError, match="SFU_EVENT"):
        sfu_event(SfuEventName.SFU_JOINED, service_id="svc", sfu_id="s", timestamp=None)  # type: ignore[arg-type]


def test_attachments_encoding() -> None:
    assert encode_attachments(None) is None
    text = encode_attachments({"a": [1, "b"], "c": None})
    assert text is not None and base64.b64decode(text) == b'{"a":[1,"b"],"c":null}'
    with pytest.raises(ValueError):
        decode_attachments(base64.b64encode(b"[1]").decode())


# ------------------------------------------------------------------------------------------
# timestamps


def test_bug_9_sfu_sctp_stream_removed_uses_the_last_sample_not_the_opened_time() -> None:
    ts = lifecycle_timestamp(SfuEventName.SFU_SCTP_STREAM_REMOVED, created=100, last_sampled=250, now=900)
    assert ts == 250
    report = sfu_event(
        SfuEventName.SFU_SCTP_STREAM_REMOVED, service_id="svc", sfu_id="s", timestamp=ts, sctp_stream_id="x"
    )
    assert report.payload["timestamp"] == 250


@pytest.mark.parametrize(
    "name",
    [
        CallEventName.CALL_ENDED,
        CallEventName.CLIENT_LEFT,
        CallEventName.PEER_CONNECTION_CLOSED,
        CallEventName.MEDIA_TRACK_REMOVED,
        SfuEventName.SFU_LEFT,
        SfuEventName.SFU_TRANSPORT_CLOSED,
        SfuEventName.SFU_RTP_PAD_REMOVED,
        SfuEventName.SFU_SCTP_STREAM_REMOVED,
    ],
)
def test_ending_events_use_the_last_sample_else_now(name: Any) -> None:
    assert lifecycle_timestamp(name, created=1, last_sampled=5, now=9) == 5
    assert lifecycle_timestamp(name, created=1, last_sampled=None, now=9) == 9


@pytest.mark.parametrize(
    "name",
    [
        CallEventName.CALL_STARTED,
        CallEventName.CLIENT_JOINED,
        CallEventName.PEER_CONNECTION_OPENED,
        CallEventName.MEDIA_TRACK_ADDED,
        SfuEventName.SFU_JOINED,
        SfuEventName.SFU_TRANSPORT_OPENED,
        SfuEventName.SFU_RTP_PAD_ADDED,
        SfuEventName.SFU_SCTP_STREAM_ADDED,
    ],
)
def test_starting_events_use_the_creation_time(name: Any) -> None:
    assert lifecycle_timestamp(name, created=1, last_sampled=5, now=9) == 1


# ------------------------------------------------------------------------------------------
# time zones (BUG 13)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (0, "Z"),
        (-60, "+01:00"),
        (-120, "+02:00"),
        (300, "-05:00"),
        (-540, "+09:00"),
        (-330, "+05:30"),
        (240, "-04:00"),
        (-345, "+05:45"),  # minutes as Date.getTimezoneOffset() gives them
        (2, "+02:00"),
        (-5, "-05:00"),
        (5.5, "+05:30"),
        (14, "+14:00"),
        (-12, "-12:00"),  # real hours
        ("-60", "+01:00"),
        (-60.0, "+01:00"),
        (None, None),
        ("abc", None),
        (True, None),
        (math.nan, None),
        (2000, None),
        ([1], None),
    ],
)
def test_time_zone_id(offset: Any, expected: str | None) -> None:
    assert time_zone_id(offset) == expected


def _expected_zone_id(zone: str, timestamp_ms: int) -> str:
    delta = datetime.datetime.fromtimestamp(timestamp_ms / 1000, zoneinfo.ZoneInfo(zone)).utcoffset()
    assert delta is not None
    minutes = int(delta.total_seconds() // 60)
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@pytest.mark.parametrize("scenario", sorted(manifest()["scenarios"]))
def test_bug_13_time_zone_of_recorded_clients_matches_the_recording_zone(scenario: str) -> None:
    zone = manifest()["scenarios"][scenario]["timezone"]
    entries = [e for e in frame_entries() if e["scenario"] == scenario]
    checked = 0
    for entry in entries:
        clients, _ = decoded_frame(entry["file"])
        for sample in clients:
            expected = _expected_zone_id(zone, sample["timestamp"])
            assert time_zone_id(sample.get("timeZoneOffsetInHours")) == expected, (entry["file"], zone)
            checked += 1
    assert checked > 0
