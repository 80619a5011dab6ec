"""Per-sample validation and identity-field normalization, through the JSON decoder as the sources use it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from observer.samples import DecodedSamples, Rejection, make_decoder


def _client(**fields: Any) -> dict[str, Any]:
    sample = {"clientId": "c-1", "roomId": "room-1", "timestamp": 1700000000000}
    sample.update(fields)
    return {key: value for key, value in sample.items() if value is not _ABSENT}


def _sfu(**fields: Any) -> dict[str, Any]:
    sample = {"sfuId": "sfu-1", "timestamp": 1700000000000}
    sample.update(fields)
    return {key: value for key, value in sample.items() if value is not _ABSENT}


_ABSENT = object()


def _decode(client: list[Any] | None = None, sfu: list[Any] | None = None, **kwargs: Any) -> DecodedSamples:
    root = {"clientSamples": client or [], "sfuSamples": sfu or []}
    return make_decoder("json", "2.2.0").decode(orjson.dumps(root), **kwargs)


def _rejections(decoded: DecodedSamples) -> list[tuple[str, int, str, str]]:
    return [(r.kind, r.index, r.field, r.reason) for r in decoded.rejected]


@pytest.mark.parametrize("field", ["clientId", "roomId"])
@pytest.mark.parametrize("value", [_ABSENT, None, ""])
def test_client_sample_without_client_or_room_id_is_dropped_alone(field: str, value: Any) -> None:
    decoded = _decode([_client(clientId="a"), _client(**{field: value}), _client(clientId="c")])
    assert [s["clientId"] for s in decoded.client_samples] == ["a", "c"]
    assert _rejections(decoded) == [("client", 1, field, "missing_field")]


@pytest.mark.parametrize("value", [_ABSENT, None, ""])
def test_sfu_sample_without_sfu_id_is_dropped_alone(value: Any) -> None:
    decoded = _decode([_client()], [_sfu(sfuId=value), _sfu(sfuId="s-2")])
    assert [s["sfuId"] for s in decoded.sfu_samples] == ["s-2"]
    assert len(decoded.client_samples) == 1
    assert _rejections(decoded) == [("sfu", 0, "sfuId", "missing_field")]


def test_sample_without_timestamp_is_dropped() -> None:
    decoded = _decode([_client(timestamp=_ABSENT)], [_sfu(timestamp=None)])
    assert _rejections(decoded) == [
        ("client", 0, "timestamp", "missing_field"),
        ("sfu", 0, "timestamp", "missing_field"),
    ]


def test_a_non_object_sample_is_dropped_alone() -> None:
    decoded = _decode([5, _client()], ["x"])
    assert len(decoded.client_samples) == 1
    assert _rejections(decoded) == [
        ("client", 0, "clientSamples[0]", "not_an_object"),
        ("sfu", 0, "sfuSamples[0]", "not_an_object"),
    ]


def test_fractional_and_textual_numbers_become_ints() -> None:
    decoded = _decode(
        [
            _client(
                timestamp=1795889903946.933,
                sampleSeq="7",
                timeZoneOffsetInHours=-60.0,
                inboundAudioTracks=[{"ssrc": "2870351331", "trackId": "t"}, {"ssrc": 12.9}],
            )
        ],
        [_sfu(timestamp="1700000000000.5", inboundRtpPads=[{"ssrc": 42.0, "padId": "p"}])],
    )
    [client] = decoded.client_samples
    assert (client["timestamp"], client["sampleSeq"], client["timeZoneOffsetInHours"]) == (
        1795889903946,
        7,
        -60,
    )
    assert [t["ssrc"] for t in client["inboundAudioTracks"]] == [2870351331, 12]
    [sfu] = decoded.sfu_samples
    assert sfu["timestamp"] == 1700000000000 and sfu["inboundRtpPads"][0]["ssrc"] == 42
    assert all(type(v) is int for v in (client["timestamp"], client["sampleSeq"], sfu["timestamp"]))


def test_numeric_ids_become_strings_and_empty_optional_ids_none() -> None:
    decoded = _decode(
        [
            _client(
                clientId=123,
                roomId=4.0,
                callId="",
                userId=7.5,
                outboundVideoTracks=[{"ssrc": 1, "trackId": 99, "peerConnectionId": "", "sfuStreamId": 5}],
            )
        ],
        [
            _sfu(
                sfuId=1,
                outboundRtpPads=[{"ssrc": 1, "padId": 2, "sinkId": 3, "streamId": 4, "transportId": 5}],
            )
        ],
    )
    [client] = decoded.client_samples
    assert (client["clientId"], client["roomId"], client["callId"], client["userId"]) == (
        "123",
        "4",
        None,
        "7.5",
    )
    assert client["outboundVideoTracks"][0] == {
        "ssrc": 1,
        "trackId": "99",
        "peerConnectionId": None,
        "sfuStreamId": "5",
    }
    [sfu] = decoded.sfu_samples
    pad = sfu["outboundRtpPads"][0]
    assert (sfu["sfuId"], pad["padId"], pad["sinkId"], pad["streamId"], pad["transportId"]) == (
        "1",
        "2",
        "3",
        "4",
        "5",
    )


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"clientId": {"id": 1}}, "clientId"),
        ({"roomId": ["r"]}, "roomId"),
        ({"callId": True}, "callId"),
        ({"marker": {}}, "marker"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"sampleSeq": 2**31}, "sampleSeq"),
        ({"timestamp": 2**63}, "timestamp"),
        ({"outboundVideoTracks": [{"ssrc": 2**64 - 1}]}, "outboundVideoTracks[0].ssrc"),
        ({"timeZoneOffsetInHours": "UTC"}, "timeZoneOffsetInHours"),
        ({"inboundVideoTracks": [{"ssrc": 1}, {"ssrc": "abc"}]}, "inboundVideoTracks[1].ssrc"),
        ({"inboundAudioTracks": [{"ssrc": 1, "sfuSinkId": [1]}]}, "inboundAudioTracks[0].sfuSinkId"),
        ({"outboundAudioTracks": [{"ssrc": 1, "trackId": False}]}, "outboundAudioTracks[0].trackId"),
        ({"pcTransports": [{"peerConnectionId": {"x": 1}}]}, "pcTransports[0].peerConnectionId"),
        ({"dataChannels": [None]}, "dataChannels[0]"),
        ({"inboundAudioTracks": {"ssrc": 1}}, "inboundAudioTracks"),
        ({"codecs": ["opus"]}, "codecs[0]"),
        ({"iceServers": "stun:x"}, "iceServers"),
        ({"browser": "Chrome"}, "browser"),
    ],
)
def test_non_coercible_client_field_invalidates_only_its_sample(fields: dict[str, Any], path: str) -> None:
    decoded = _decode([_client(**fields), _client(clientId="ok")])
    assert [s["clientId"] for s in decoded.client_samples] == ["ok"]
    assert decoded.rejected == [Rejection("client", 0, path, "invalid_field")]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"sfuId": ["s"]}, "sfuId"),
        ({"timestamp": "NaN"}, "timestamp"),
        ({"transports": [{"transportId": {}}]}, "transports[0].transportId"),
        ({"inboundRtpPads": [{"ssrc": "x"}]}, "inboundRtpPads[0].ssrc"),
        ({"outboundRtpPads": [{"sinkId": True}]}, "outboundRtpPads[0].sinkId"),
        ({"sctpChannels": [{"channelId": []}]}, "sctpChannels[0].channelId"),
        ({"customSfuEvents": [1]}, "customSfuEvents[0]"),
    ],
)
def test_non_coercible_sfu_field_invalidates_only_its_sample(fields: dict[str, Any], path: str) -> None:
    decoded = _decode(sfu=[_sfu(**fields), _sfu(sfuId="ok")])
    assert [s["sfuId"] for s in decoded.sfu_samples] == ["ok"]
    assert decoded.rejected == [Rejection("sfu", 0, path, "invalid_field")]


def test_null_arrays_are_removed_and_stats_left_untouched() -> None:
    track = {"ssrc": 1, "audioLevel": 0.02, "payloadType": 111, "weird": [1, {"a": None}]}
    decoded = _decode([_client(codecs=None, inboundAudioTracks=[track], iceServers=None)])
    [client] = decoded.client_samples
    assert "codecs" not in client and "iceServers" not in client
    assert client["inboundAudioTracks"] == [track]


def test_server_timestamp_replaces_every_sample_timestamp() -> None:
    decoded = _decode(
        [_client(timestamp=_ABSENT), _client(timestamp=5.5)],
        [_sfu(timestamp="bad")],
        timestamp_override_ms=42,
    )
    assert decoded.rejected == []
    assert [s["timestamp"] for s in decoded.client_samples + decoded.sfu_samples] == [42, 42, 42]


# ------------------------------------------------------------------------------------------
# the fast check (already-normal samples skip the general walk) must agree with the general walk

_ODD_VALUES: list[Any] = [
    _ABSENT, None, "", "x", "12", "1.5e3", 0, 7, 2**31, -(2**31) - 1, 2**63, 1.5, -0.0,
    float("inf"), float("nan"), True, False, [], ["x"], [{}], {}, {"a": 1},
]


def _perturbations(sample: dict[str, Any], kind: str) -> list[tuple[str, str | None, Any]]:
    """(key, element field or None, value): one top-level or one (last) element field set to a value."""
    from observer.samples import normalize

    elements = normalize._CLIENT_ELEMENTS if kind == "client" else normalize._SFU_ELEMENTS
    top = (["clientId", "roomId", "callId", "userId", "marker", "sampleSeq", "timeZoneOffsetInHours"]
           if kind == "client" else ["sfuId", "marker", "timeZoneOffsetInHours"])
    top += ["timestamp"] + [key for key, _, _ in elements]
    top += list(normalize._CLIENT_OBJECT_ARRAYS + normalize._CLIENT_STRING_ARRAYS + normalize._CLIENT_OBJECTS
                if kind == "client" else normalize._SFU_OBJECT_ARRAYS)
    out: list[tuple[str, str | None, Any]] = []
    for value in _ODD_VALUES:
        out += [(key, None, value) for key in top]
        for key, id_fields, has_ssrc in elements:
            if sample.get(key):
                fields = [*id_fields, *(["ssrc"] if has_ssrc else [])]
                out += [(key, field, value) for field in fields]
                out.append((key, "", value))  # appended as an element
    return out


def _apply(data: bytes, key: str, field: str | None, value: Any) -> dict[str, Any]:
    sample: dict[str, Any] = orjson.loads(data)
    target = sample if field is None else sample[key][-1]
    name = key if field is None else field
    if field == "":
        sample[key].append(value)
        return sample
    target.pop(name, None)
    if value is not _ABSENT:
        target[name] = value
    return sample


def _outcome(normalize_fn: Any, sample: dict[str, Any], override: int | None) -> Any:
    from observer.samples.normalize import FieldProblem

    try:
        normalize_fn(sample, override)
    except FieldProblem as problem:
        return ("rejected", problem.field, problem.reason)
    return ("kept", orjson.dumps(sample, option=orjson.OPT_NON_STR_KEYS))


@pytest.mark.parametrize("file", ["p2p-json/001-r1-alice-json-ws.bin", "p2p-json/007-r1-alice-json-ws.bin",
                                  "sfu-json/004-sfu1-json-rest.bin"])
def test_fast_path_agrees_with_the_general_walk(file: str) -> None:
    from observer.samples import normalize
    from tests.observer.test_reports_conformance import raw_json_frame

    clients, sfus = raw_json_frame(file)
    checked = 0
    for kind, base in [("client", s) for s in clients] + [("sfu", s) for s in sfus]:
        public = normalize.normalize_client_sample if kind == "client" else normalize.normalize_sfu_sample
        walk = normalize._normalize_client_sample if kind == "client" else normalize._normalize_sfu_sample
        data = orjson.dumps(base)
        for n, (key, field, value) in enumerate([("timestamp", None, base["timestamp"]),
                                                 *_perturbations(base, kind)]):
            override = 42 if n % 3 == 0 else None
            expected = _outcome(walk, _apply(data, key, field, value), override)
            assert _outcome(public, _apply(data, key, field, value), override) == expected, (key, field, value)
            checked += 1
    assert checked > 500
