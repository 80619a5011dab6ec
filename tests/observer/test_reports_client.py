"""build_client_reports: fields the observer adds, coercion of monitor values, drops, bug fixes."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from observer.reports.client import CallMetaType, build_client_reports
from observer.reports.enrichment import RemoteTrack
from observer.reports.model import Report, ReportType
from observer.reports.schema import ISSUES
from tests.observer.test_reports_conformance import assert_conforms, decoded_frame, raw_json_frame

P2P_FIRST = "p2p-json/001-r1-alice-json-ws.bin"
P2P_CUSTOM = "p2p-json/004-r1-alice-json-ws.bin"
SFU_FIRST = "sfu-json/001-r1-alice-json-ws.bin"


def _sample(file: str = P2P_FIRST, raw: bool = False) -> dict[str, Any]:
    clients, _ = raw_json_frame(file) if raw else decoded_frame(file)
    return clients[0]


def _build(sample: dict[str, Any], **kw: Any) -> list[Report]:
    kw.setdefault("service_id", "svc")
    kw.setdefault("media_unit_id", "unit")
    kw.setdefault("call_id", "call-1")
    return build_client_reports(sample, **kw)


def _of(reports: list[Report], report_type: ReportType) -> list[Report]:
    return [r for r in reports if r.type is report_type]


def _dropped(schema: str, reason_part: str) -> int:
    return sum(n for (s, reason), n in ISSUES.dropped.items() if s == schema and reason_part in reason)


def _failures(schema: str, field: str) -> int:
    return ISSUES.coercion_failures[(schema, field)]


def test_ids_come_from_the_arguments_and_the_sample() -> None:
    sample = _sample()
    sample["serviceId"] = "from-payload"  # serviceId/mediaUnitId are never taken from the payload
    reports = _build(sample, service_id="svc", media_unit_id="unit", call_id="call-1")
    for r in reports:
        assert r.payload["serviceId"] == "svc"
        assert r.payload["mediaUnitId"] == "unit"
        assert r.payload["callId"] == "call-1"
        assert r.payload["clientId"] == sample["clientId"]
        assert r.payload["roomId"] == sample["roomId"]
        assert r.payload["userId"] == "alice"
        assert r.payload["timestamp"] == sample["timestamp"]
        assert r.payload["sampleSeq"] == 0


def test_output_is_ordered_by_type() -> None:
    order = [r.type for r in _build(_sample(P2P_CUSTOM))]
    expected = [
        ReportType.PEER_CONNECTION_TRANSPORT,
        ReportType.ICE_CANDIDATE_PAIR,
        ReportType.INBOUND_AUDIO_TRACK,
        ReportType.INBOUND_VIDEO_TRACK,
        ReportType.OUTBOUND_AUDIO_TRACK,
        ReportType.OUTBOUND_VIDEO_TRACK,
        ReportType.PEER_CONNECTION_DATA_CHANNEL,
        ReportType.CALL_META_DATA,
        ReportType.CLIENT_EXTENSION_DATA,
        ReportType.CALL_EVENT,
    ]
    assert [t for i, t in enumerate(order) if i == 0 or order[i - 1] != t] == expected


def test_bug_9_pc_label_is_copied_to_tracks_ice_pairs_and_data_channels() -> None:
    sample = _sample()
    labels = {t["peerConnectionId"]: t["label"] for t in sample["pcTransports"]}
    assert set(labels.values()) == {"peer-bob", "peer-carol"}
    assert all("label" not in p for p in sample["iceCandidatePairs"])
    reports = _build(sample)
    for r in reports:
        pc = r.payload.get("peerConnectionId")
        if r.type is ReportType.PEER_CONNECTION_DATA_CHANNEL:
            assert r.payload["peerConnectionLabel"] == labels[pc]
            assert r.payload["label"] == "chat"
        elif r.type not in (
            ReportType.CALL_META_DATA,
            ReportType.CLIENT_EXTENSION_DATA,
            ReportType.CALL_EVENT,
        ):
            assert r.payload["label"] == labels[pc], r.type


def test_label_from_an_ice_pair_when_no_transport_has_one() -> None:
    sample = _sample()
    for t in sample["pcTransports"]:
        del t["label"]
    pc = sample["iceCandidatePairs"][0]["peerConnectionId"]
    sample["iceCandidatePairs"][0]["label"] = "from-pair"
    reports = _build(sample)
    tracks = [r for r in _of(reports, ReportType.INBOUND_AUDIO_TRACK) if r.payload["peerConnectionId"] == pc]
    assert tracks and all(r.payload["label"] == "from-pair" for r in tracks)
    transports = [
        r for r in _of(reports, ReportType.PEER_CONNECTION_TRANSPORT) if r.payload["peerConnectionId"] == pc
    ]
    assert transports[0].payload["label"] == "from-pair"


def test_matched_inbound_tracks_get_the_remote_fields() -> None:
    sample = _sample()
    audio = sample["inboundAudioTracks"][0]
    remote = RemoteTrack(
        client_id="bob-client", user_id="bob", peer_connection_id="bob-pc", track_id="bob-track"
    )
    reports = _build(sample, matches={audio["trackId"]: remote})
    (matched,) = [
        r for r in _of(reports, ReportType.INBOUND_AUDIO_TRACK) if r.payload["trackId"] == audio["trackId"]
    ]
    assert (
        matched.payload["remoteClientId"],
        matched.payload["remoteUserId"],
        matched.payload["remotePeerConnectionId"],
        matched.payload["remoteTrackId"],
    ) == ("bob-client", "bob", "bob-pc", "bob-track")
    others = [r for r in _of(reports, ReportType.INBOUND_AUDIO_TRACK) if r is not matched]
    assert others and all(r.payload["remoteTrackId"] is None for r in others)


def test_unmatched_inbound_track_keeps_the_clients_own_remote_client_id() -> None:
    sample = _sample()
    sample["inboundVideoTracks"][0]["remoteClientId"] = "claimed-by-client"
    reports = _of(_build(sample), ReportType.INBOUND_VIDEO_TRACK)
    assert reports[0].payload["remoteClientId"] == "claimed-by-client"
    assert reports[0].payload["remoteUserId"] is None


def test_drop_unmatched_inbound_drops_only_unmatched_inbound_reports() -> None:
    sample = _sample()
    matched_id = sample["inboundAudioTracks"][0]["trackId"]
    before = _dropped("INBOUND_VIDEO_TRACK", "unmatched")
    reports = _build(sample, matches={matched_id: RemoteTrack("c")}, drop_unmatched_inbound=True)
    assert [r.payload["trackId"] for r in _of(reports, ReportType.INBOUND_AUDIO_TRACK)] == [matched_id]
    assert _of(reports, ReportType.INBOUND_VIDEO_TRACK) == []
    assert len(_of(reports, ReportType.OUTBOUND_VIDEO_TRACK)) == 2
    assert _dropped("INBOUND_VIDEO_TRACK", "unmatched") == before + 2


def test_bug_2_a_sample_without_call_id_yields_nothing_and_does_not_affect_others() -> None:
    before = _dropped("ClientSample", "callId")
    assert _build(_sample(), call_id=None) == []
    assert _dropped("ClientSample", "callId") == before + 1
    assert len(_build(_sample(), call_id="call-1")) == 45


def test_sample_without_client_id_yields_nothing() -> None:
    sample = _sample()
    del sample["clientId"]
    assert _build(sample) == []


def test_bug_schema_version_2_0_4_transport_and_ice_pair_reports_say_2_2_0() -> None:
    reports = _build(_sample())
    for report_type in (ReportType.PEER_CONNECTION_TRANSPORT, ReportType.ICE_CANDIDATE_PAIR):
        (first, *_) = _of(reports, report_type)
        assert first.schema_version == "2.2.0"
        assert orjson.loads(first.to_json())["schemaVersion"] == "2.2.0"


def test_fractional_values_in_int_fields_are_truncated() -> None:
    sample = _sample(raw=True)
    track = sample["inboundAudioTracks"][0]
    assert isinstance(sample["timestamp"], float)
    assert 0 < track["audioLevel"] < 1 and track["totalSamplesDuration"] > 1
    (report, *_) = _of(_build(sample), ReportType.INBOUND_AUDIO_TRACK)
    assert report.payload["audioLevel"] == 0
    assert report.payload["totalSamplesDuration"] == int(track["totalSamplesDuration"])
    assert report.payload["timestamp"] == int(sample["timestamp"])
    assert_conforms(report)


def test_int_values_in_double_fields_become_floats() -> None:
    sample = _sample(raw=True)
    pair = sample["iceCandidatePairs"][0]
    assert type(pair["availableOutgoingBitrate"]) is int
    (report, *_) = _of(_build(sample), ReportType.ICE_CANDIDATE_PAIR)
    assert report.payload["availableOutgoingBitrate"] == float(pair["availableOutgoingBitrate"])
    assert type(report.payload["availableOutgoingBitrate"]) is float


def test_string_numbers_are_parsed_and_garbage_becomes_null_counted_once_per_field() -> None:
    sample = _sample()
    sample["inboundAudioTracks"][0]["packetsReceived"] = "123"
    sample["inboundAudioTracks"][0]["packetsLost"] = "lots"
    sample["inboundAudioTracks"][1]["packetsLost"] = {"a": 1}
    sample["inboundAudioTracks"][0]["jitter"] = "0.5"
    before = _failures("INBOUND_AUDIO_TRACK", "packetsLost")
    first, second = _of(_build(sample), ReportType.INBOUND_AUDIO_TRACK)
    assert first.payload["packetsReceived"] == 123
    assert first.payload["jitter"] == 0.5
    assert first.payload["packetsLost"] is None and second.payload["packetsLost"] is None
    assert _failures("INBOUND_AUDIO_TRACK", "packetsLost") == before + 2
    assert_conforms(first)


def test_int32_overflow_is_null_but_long_fields_keep_large_values() -> None:
    sample = _sample()
    sample["inboundAudioTracks"][0]["totalSamplesReceived"] = 2**31
    sample["inboundAudioTracks"][0]["bytesReceived"] = 2**40
    (report, *_) = _of(_build(sample), ReportType.INBOUND_AUDIO_TRACK)
    assert report.payload["totalSamplesReceived"] is None
    assert report.payload["bytesReceived"] == 2**40


def test_an_element_without_a_required_field_is_dropped_alone() -> None:
    sample = _sample()
    sample["outboundVideoTracks"][0]["ssrc"] = "not-a-number"
    del sample["outboundAudioTracks"][0]["peerConnectionId"]
    before = _dropped("OUTBOUND_AUDIO_TRACK", "peerConnectionId")
    reports = _build(sample)
    assert len(_of(reports, ReportType.OUTBOUND_VIDEO_TRACK)) == 1
    assert len(_of(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1
    assert len(_of(reports, ReportType.INBOUND_VIDEO_TRACK)) == 2
    assert _dropped("OUTBOUND_AUDIO_TRACK", "peerConnectionId") == before + 1


def test_malformed_lists_and_elements_are_skipped_without_raising() -> None:
    sample = _sample()
    sample["inboundAudioTracks"] = {"not": "a list"}
    sample["inboundVideoTracks"].insert(0, "garbage")
    sample["outboundAudioTracks"][0]["peerConnectionId"] = ["unhashable"]
    sample["outboundVideoTracks"][0]["trackId"] = {"unhashable": True}
    sample["mediaConstraints"] = [None, 7, {"k": 1}]
    sample["engine"] = "Blink"
    reports = _build(sample, matches={"x": RemoteTrack("c")})
    assert _of(reports, ReportType.INBOUND_AUDIO_TRACK) == []
    assert len(_of(reports, ReportType.INBOUND_VIDEO_TRACK)) == 2
    # a list in a string field is rendered as JSON
    assert next(r.payload["peerConnectionId"] for r in _of(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == (
        '["unhashable"]'
    )
    assert _of(reports, ReportType.OUTBOUND_VIDEO_TRACK)[0].payload["trackId"] == '{"unhashable":true}'
    constraints = [
        r.payload["payload"]
        for r in _of(reports, ReportType.CALL_META_DATA)
        if r.payload["type"] == "MEDIA_CONSTRAINT"
    ]
    assert constraints == ["7", '{"k":1}']
    assert not [r for r in _of(reports, ReportType.CALL_META_DATA) if r.payload["type"] == "ENGINE"]
    for r in reports:
        assert_conforms(r)


def test_data_channel_message_counts_from_w3c_or_schema_names() -> None:
    sample = _sample(raw=True)
    w3c, schema_named = sample["dataChannels"]
    assert "messagesSent" in w3c
    schema_named["messageSent"] = schema_named.pop("messagesSent")
    schema_named["messageReceived"] = schema_named.pop("messagesReceived")
    first, second = _of(_build(sample), ReportType.PEER_CONNECTION_DATA_CHANNEL)
    assert (first.payload["messagesSent"], first.payload["messagesReceived"]) == (
        w3c["messagesSent"],
        w3c["messagesReceived"],
    )
    assert (second.payload["messagesSent"], second.payload["messagesReceived"]) == (
        schema_named["messageSent"],
        schema_named["messageReceived"],
    )


def test_sfu_stream_and_sink_ids_are_copied_from_tracks() -> None:
    sample = _sample(SFU_FIRST)
    inbound = sample["inboundAudioTracks"][0]
    assert inbound["sfuStreamId"] and inbound["sfuSinkId"]
    reports = _build(sample)
    (report,) = [
        r for r in _of(reports, ReportType.INBOUND_AUDIO_TRACK) if r.payload["ssrc"] == inbound["ssrc"]
    ]
    assert (report.payload["sfuStreamId"], report.payload["sfuSinkId"]) == (
        inbound["sfuStreamId"],
        inbound["sfuSinkId"],
    )
    (outbound,) = _of(reports, ReportType.OUTBOUND_AUDIO_TRACK)
    assert outbound.payload["sfuStreamId"] == sample["outboundAudioTracks"][0]["sfuStreamId"]


# ------------------------------------------------------------------------------------------
# CALL_META_DATA


def _meta(reports: list[Report], meta_type: CallMetaType) -> list[dict[str, Any]]:
    return [
        r.payload for r in _of(reports, ReportType.CALL_META_DATA) if r.payload["type"] == meta_type.value
    ]


def test_meta_reports_one_per_element_with_schema_fields_only() -> None:
    sample = _sample(raw=True)
    reports = _build(sample)
    assert len(_meta(reports, CallMetaType.CODEC)) == len(sample["codecs"])
    assert len(_meta(reports, CallMetaType.MEDIA_DEVICE)) == len(sample["mediaDevices"])
    assert len(_meta(reports, CallMetaType.MEDIA_SOURCE)) == len(sample["mediaSources"])
    codec = orjson.loads(_meta(reports, CallMetaType.CODEC)[0]["payload"])
    # numeric payloadType becomes the schema's string; W3C keys (id, type, transportId) are dropped
    assert codec == {
        "payloadType": "111",
        "codecType": None,
        "mimeType": "audio/opus",
        "clockRate": 48000,
        "channels": 2,
        "sdpFmtpLine": "minptime=10;useinbandfec=1",
    }
    device = orjson.loads(_meta(reports, CallMetaType.MEDIA_DEVICE)[0]["payload"])
    assert set(device) == {"id", "kind", "label"}
    (os_meta,) = _meta(reports, CallMetaType.OPERATION_SYSTEM)
    assert orjson.loads(os_meta["payload"]) == {"name": "Windows", "version": "NT 10.0", "versionName": "10"}
    assert [orjson.loads(m["payload"]) for m in _meta(reports, CallMetaType.ENGINE)] == [
        {"name": "Blink", "version": None}
    ]
    for m in _meta(reports, CallMetaType.CODEC):
        assert m["sampleTimestamp"] == m["timestamp"] == int(sample["timestamp"])
        assert m["peerConnectionId"] is None


def test_meta_local_sdps_are_one_report_and_strings_stay_raw() -> None:
    sample = _sample()
    reports = _build(sample)
    (sdp,) = _meta(reports, CallMetaType.LOCAL_SDP)
    assert sdp["payload"] == "\n".join(sample["localSDPs"])
    assert [m["payload"] for m in _meta(reports, CallMetaType.MEDIA_CONSTRAINT)] == sample["mediaConstraints"]


def test_meta_ice_candidates_carry_their_peer_connection() -> None:
    sample = _sample()
    reports = _build(sample)
    local = _meta(reports, CallMetaType.ICE_LOCAL_CANDIDATE)
    assert [m["peerConnectionId"] for m in local] == [
        c["peerConnectionId"] for c in sample["iceLocalCandidates"]
    ]
    assert orjson.loads(local[0]["payload"])["address"] == sample["iceLocalCandidates"][0]["address"]
    assert len(_meta(reports, CallMetaType.ICE_REMOTE_CANDIDATE)) == len(sample["iceRemoteCandidates"])


def test_meta_user_media_errors_and_ice_servers() -> None:
    sample = _sample()
    sample["userMediaErrors"] = ["NotAllowedError"]
    sample["iceServers"] = ["turn:turn.example.com:3478", "stun:stun.example.com"]
    reports = _build(sample)
    assert [m["payload"] for m in _meta(reports, CallMetaType.USER_MEDIA_ERROR)] == ["NotAllowedError"]
    assert [m["payload"] for m in _meta(reports, CallMetaType.ICE_SERVER)] == sample["iceServers"]


# ------------------------------------------------------------------------------------------
# extension stats and custom call events


def test_extension_stats_with_invalid_json_are_dropped_and_counted() -> None:
    sample = _sample(P2P_CUSTOM)
    (valid,) = sample["extensionStats"]
    sample["extensionStats"] = [valid, {"type": "BROKEN", "payload": "{not json"}, {"type": "NONE"}]
    before = _dropped("CLIENT_EXTENSION_DATA", "JSON")
    (report,) = _of(_build(sample), ReportType.CLIENT_EXTENSION_DATA)
    assert report.payload["extensionType"] == valid["type"]
    assert report.payload["payload"] == valid["payload"]
    assert report.payload["peerConnectionId"] is None
    assert _dropped("CLIENT_EXTENSION_DATA", "JSON") == before + 2


def test_custom_call_event_fields_and_timestamp() -> None:
    sample = _sample(P2P_CUSTOM)
    (event,) = sample["customCallEvents"]
    assert event["timestamp"] != sample["timestamp"]
    (report,) = _of(_build(sample), ReportType.CALL_EVENT)
    p = report.payload
    assert p["name"] == event["name"] == "HAND_RAISED"
    assert (p["value"], p["message"], p["attachments"]) == (
        event["value"],
        event["message"],
        event["attachments"],
    )
    assert p["peerConnectionId"] == event["peerConnectionId"]
    assert p["mediaTrackId"] == event["mediaTrackId"]
    assert p["timestamp"] == event["timestamp"]
    assert p["sampleTimestamp"] == sample["timestamp"]
    assert (p["clientId"], p["callId"], p["sampleSeq"]) == (sample["clientId"], "call-1", sample["sampleSeq"])


def test_custom_call_event_without_timestamp_uses_the_sample_timestamp() -> None:
    sample = _sample(P2P_CUSTOM)
    event = copy.deepcopy(sample["customCallEvents"][0])
    del event["timestamp"]
    sample["customCallEvents"] = [event, {"value": "no name"}]
    before = _dropped("CALL_EVENT", "name")
    (report,) = _of(_build(sample), ReportType.CALL_EVENT)
    assert report.payload["timestamp"] == sample["timestamp"]
    assert _dropped("CALL_EVENT", "name") == before + 1


@pytest.mark.parametrize("key", ["customCallEvents", "extensionStats", "pcTransports"])
def test_empty_or_null_lists_give_no_reports(key: str) -> None:
    sample = _sample(P2P_CUSTOM)
    empty: tuple[Any, ...] = ([], None)
    for value in empty:
        sample[key] = value
        types = {r.type for r in _build(sample)}
        gone = {
            "customCallEvents": ReportType.CALL_EVENT,
            "extensionStats": ReportType.CLIENT_EXTENSION_DATA,
            "pcTransports": ReportType.PEER_CONNECTION_TRANSPORT,
        }[key]
        assert gone not in types
