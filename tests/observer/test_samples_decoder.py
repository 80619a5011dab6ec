"""make_decoder() parameter handling and whole-frame decoding, JSON and protobuf (2.2.0 and 2.1.x)."""

from __future__ import annotations

import orjson
import pytest

from observer.samples import SamplesError, make_decoder
from observer.samples import samples_pb2 as pb


def _client(**fields: object) -> dict[str, object]:
    return {"clientId": "c-1", "roomId": "room-1", "timestamp": 1700000000000, **fields}


def _json(**root: object) -> bytes:
    return orjson.dumps(root)


# --- parameters ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [None, "", "json", "JSON", " Json "])
def test_missing_or_json_format_decodes_json(fmt: str | None) -> None:
    decoder = make_decoder(fmt, None)
    assert decoder.format == "json"
    assert decoder.decode(_json(clientSamples=[_client()])).client_samples[0]["clientId"] == "c-1"


@pytest.mark.parametrize("fmt", ["protobuf", "PROTOBUF", "ProtoBuf"])
def test_protobuf_format_is_case_insensitive(fmt: str) -> None:
    assert make_decoder(fmt, "2.2.0").format == "protobuf"


@pytest.mark.parametrize("fmt", ["avro", "none", "xml", "jsn"])
def test_unknown_format_is_an_error_not_silent_json(fmt: str) -> None:
    with pytest.raises(SamplesError, match=f"Unsupported format: {fmt}. Supported formats: json, protobuf"):
        make_decoder(fmt, "2.2.0")


@pytest.mark.parametrize("version", ["2.2.1", "2.0.4", "x.y.z", "3.0.0"])
def test_unsupported_schema_version_is_an_error(version: str) -> None:
    with pytest.raises(SamplesError, match="schema version"):
        make_decoder("json", version)


@pytest.mark.parametrize("patch", range(10))
def test_every_2_1_release_is_accepted_as_json(patch: int) -> None:
    decoder = make_decoder("json", f"2.1.{patch}")
    decoded = decoder.decode(_json(clientSamples=[_client()], sfuSamples=[{"sfuId": "s", "timestamp": 1}]))
    assert [s["clientId"] for s in decoded.client_samples] == ["c-1"]
    assert [s["sfuId"] for s in decoded.sfu_samples] == ["s"]


@pytest.mark.parametrize("patch", range(8))
def test_protobuf_before_2_1_8_is_refused_with_the_reason(patch: int) -> None:
    with pytest.raises(SamplesError, match=r"field numbering differs from 2\.1\.8.*format=json"):
        make_decoder("protobuf", f"2.1.{patch}")


# --- JSON frames -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"null", b"[]", b'"text"', b"\xff\xfe", b'{"clientSamples": {}}', b'{"sfuSamples": 3}'],
)
def test_undecodable_json_frame_is_rejected_as_a_whole(data: bytes) -> None:
    with pytest.raises(SamplesError, match="Failed to decode"):
        make_decoder("json", None).decode(data)


def test_controls_turn_samples_and_unknown_keys_are_ignored() -> None:
    frame = _json(
        controls={"close": True},
        turnSamples=[{"serverId": "turn-1"}],
        clientSamples=[_client(rawStatsKey={"x": 1})],
        somethingNew=1,
    )
    decoded = make_decoder("json", None).decode(frame)
    assert len(decoded.client_samples) == 1 and decoded.sfu_samples == [] and decoded.rejected == []
    assert decoded.client_samples[0]["rawStatsKey"] == {"x": 1}


def test_custom_events_of_2_2_are_kept() -> None:
    event = {"name": "MY_EVENT", "value": "1", "timestamp": 5}
    decoded = make_decoder("json", "2.2.0").decode(_json(clientSamples=[_client(customCallEvents=[event])]))
    assert decoded.client_samples[0]["customCallEvents"] == [event]


def test_empty_samples_object_decodes_to_nothing() -> None:
    decoded = make_decoder("json", None).decode(b"{}")
    assert (decoded.client_samples, decoded.sfu_samples, decoded.rejected) == ([], [], [])


# --- protobuf frames -------------------------------------------------------------------------------------


def _proto_frame() -> pb.Samples:
    frame = pb.Samples()
    client = frame.clientSamples.add(clientId="c-1", roomId="room-1", timestamp=1700000000123, sampleSeq=3)
    client.userId = "alice"
    client.timeZoneOffsetInHours = -60
    client.browser.name = "Chrome"
    client.localSDPs.extend(["v=0", "s=-"])
    track = client.inboundAudioTracks.add(ssrc=2870351331, trackId="t-1", peerConnectionId="pc-1")
    track.packetsReceived = 10
    track.jitter = 0.5
    client.codecs.add(payloadType="111", mimeType="audio/opus")
    client.customCallEvents.add(name="MY_EVENT", value="v")
    sfu = frame.sfuSamples.add(sfuId="sfu-1", timestamp=1700000000000)
    sfu.inboundRtpPads.add(transportId="tr-1", streamId="st-1", padId="pad-1", ssrc=42, packetsReceived=7)
    frame.turnSamples.add(serverId="turn-1")
    return frame


def test_protobuf_and_json_twins_decode_to_the_same_dicts() -> None:
    json_twin = {
        "clientSamples": [
            {
                "clientId": "c-1",
                "roomId": "room-1",
                "timestamp": 1700000000123,
                "sampleSeq": 3,
                "userId": "alice",
                "timeZoneOffsetInHours": -60,
                "browser": {"name": "Chrome"},
                "localSDPs": ["v=0", "s=-"],
                "inboundAudioTracks": [
                    {
                        "ssrc": 2870351331,
                        "trackId": "t-1",
                        "peerConnectionId": "pc-1",
                        "packetsReceived": 10,
                        "jitter": 0.5,
                    }
                ],
                "codecs": [{"payloadType": "111", "mimeType": "audio/opus"}],
                "customCallEvents": [{"name": "MY_EVENT", "value": "v"}],
            }
        ],
        "sfuSamples": [
            {
                "sfuId": "sfu-1",
                "timestamp": 1700000000000,
                "inboundRtpPads": [
                    {
                        "transportId": "tr-1",
                        "streamId": "st-1",
                        "padId": "pad-1",
                        "ssrc": 42,
                        "packetsReceived": 7,
                    }
                ],
            }
        ],
    }
    from_proto = make_decoder("protobuf", "2.2.0").decode(_proto_frame().SerializeToString())
    from_json = make_decoder("json", "2.2.0").decode(orjson.dumps(json_twin))
    assert from_proto.rejected == from_json.rejected == []
    assert from_proto.client_samples == from_json.client_samples
    assert from_proto.sfu_samples == from_json.sfu_samples


def test_absent_protobuf_strings_stay_absent_not_empty() -> None:
    decoded = make_decoder("protobuf", None).decode(_proto_frame().SerializeToString())
    sample = decoded.client_samples[0]
    assert sample.get("callId") is None and "marker" not in sample
    assert "sfuStreamId" not in sample["inboundAudioTracks"][0]


def test_protobuf_sample_missing_a_required_id_drops_only_that_sample() -> None:
    frame = _proto_frame()
    frame.clientSamples.add(roomId="room-1", timestamp=1)  # no clientId: proto2 "required", not enforced
    decoded = make_decoder("protobuf", None).decode(frame.SerializePartialToString())
    assert [s["clientId"] for s in decoded.client_samples] == ["c-1"]
    assert [(r.kind, r.index, r.field, r.reason) for r in decoded.rejected] == [
        ("client", 1, "clientId", "missing_field")
    ]


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff\xff", b'{"clientSamples": []}', b"\x0a\x05abc", _proto_frame().SerializeToString()[:-3]],
)
def test_undecodable_protobuf_frame_is_rejected_as_a_whole(data: bytes) -> None:
    with pytest.raises(SamplesError, match="Failed to decode protobuf Samples"):
        make_decoder("protobuf", None).decode(data)


def test_invalid_utf8_in_protobuf_strings_is_read_with_replacement_characters() -> None:
    frame = _proto_frame()
    frame.clientSamples[0].localSDPs.append("BROKEN-SDP")
    frame.clientSamples[0].inboundAudioTracks[0].decoderImplementation = "BROKEN-DEC"
    frame.clientSamples[0].marker = "BROKEN-MRK"
    data = frame.SerializeToString().replace(b"BROKEN-", b"BROKEN\xff")  # same length: framing stays valid
    [sample] = make_decoder("protobuf", None).decode(data).client_samples
    assert (sample["localSDPs"][-1], sample["marker"]) == ("BROKEN\ufffdSDP", "BROKEN\ufffdMRK")
    assert sample["inboundAudioTracks"][0]["decoderImplementation"] == "BROKEN\ufffdDEC"
    orjson.dumps(sample)  # nothing a JSON sink cannot write


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def test_2_1_8_protobuf_uses_the_2_1_8_field_numbers() -> None:
    # Field numbers of the reference observer's 2.1.8 descriptor (no custom events, so everything after
    # certificates/codecs moves down by two in ClientSample): inboundAudioTracks=9, clientId=19,
    # timestamp=20, roomId=27, sampleSeq=28, userId=30; InboundAudioTrack ssrc=1, peerConnectionId=24,
    # trackId=43; SfuSample inboundRtpPads=2, sfuId=6, timestamp=7; SfuInboundRtpPad padId=1, ssrc=2,
    # streamId=3, transportId=4.
    track = _field(1, 123456) + _field(24, "pc-1") + _field(43, "t-1")
    client = (
        _field(9, track)
        + _field(19, "c-1")
        + _field(20, 1700000000000)
        + _field(27, "room-1")
        + _field(28, 4)
        + _field(30, "bob")
    )
    pad = _field(1, "pad-1") + _field(2, 99) + _field(3, "st-1") + _field(4, "tr-1")
    sfu = _field(2, pad) + _field(6, "sfu-1") + _field(7, 1700000000001)
    data = _field(1, client) + _field(2, sfu)

    decoded = make_decoder("protobuf", "2.1.8").decode(data)

    assert decoded.rejected == []
    [sample] = decoded.client_samples
    assert (sample["clientId"], sample["roomId"], sample["userId"], sample["sampleSeq"]) == (
        "c-1",
        "room-1",
        "bob",
        4,
    )
    assert sample["timestamp"] == 1700000000000
    assert sample["inboundAudioTracks"] == [{"ssrc": 123456, "peerConnectionId": "pc-1", "trackId": "t-1"}]
    [sfu_sample] = decoded.sfu_samples
    assert (sfu_sample["sfuId"], sfu_sample["timestamp"]) == ("sfu-1", 1700000000001)
    assert sfu_sample["inboundRtpPads"] == [
        {"padId": "pad-1", "ssrc": 99, "streamId": "st-1", "transportId": "tr-1"}
    ]
    assert make_decoder("protobuf", "2.1.9").decode(data).client_samples == decoded.client_samples


def test_2_2_0_protobuf_decoder_does_not_read_2_1_8_numbers() -> None:
    client = _field(19, "c-1") + _field(20, 1700000000000) + _field(27, "room-1")
    # 19 is pcTransports (a message) in 2.2.0, so "c-1" is read as a corrupt nested message
    with pytest.raises(SamplesError):
        make_decoder("protobuf", "2.2.0").decode(_field(1, client))
