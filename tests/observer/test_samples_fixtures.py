"""Every recorded monitor frame decodes to the ids and verdicts its manifest entry lists.

The helpers here (fixture location, manifest access, what a decoded frame "contains") are shared with
the sources tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from observer.samples import Sample, SamplesError, make_decoder
from tests.shared_paths import FIXTURES


@cache
def fixtures_dir() -> Path:
    return FIXTURES


def requires_fixtures(obj):  # the fixtures are mandatory (tests.shared_paths fails loudly without them)
    return obj


@cache
def manifest() -> dict[str, Any]:
    directory = fixtures_dir()
    if directory is None:
        return {"files": [], "scenarios": {}}
    return json.loads((directory / "manifest.json").read_text())


def manifest_files() -> list[dict[str, Any]]:
    return list(manifest()["files"])


def frame_bytes(entry: dict[str, Any]) -> bytes:
    directory = fixtures_dir()
    assert directory is not None
    return (directory / entry["file"]).read_bytes()


def query(entry: dict[str, Any]) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(entry["pathQuery"]).query).items()}


def frame_id(entry: dict[str, Any]) -> str:
    return str(entry["file"])


_INBOUND = ("inboundAudioTracks", "inboundVideoTracks")
_OUTBOUND = ("outboundAudioTracks", "outboundVideoTracks")
_PC_ELEMENTS = (
    "pcTransports",
    "iceCandidatePairs",
    "dataChannels",
    "iceLocalCandidates",
    "iceRemoteCandidates",
)


def _element_values(samples: Iterable[Sample], arrays: Iterable[str], field: str) -> list[Any]:
    arrays = tuple(arrays)
    return [
        element[field]
        for sample in samples
        for array in arrays
        for element in sample.get(array) or ()
        if element.get(field) is not None
    ]


def contained_ids(client: list[Sample], sfu: list[Sample]) -> dict[str, Any]:
    """The manifest's ``contains`` block, computed from decoded samples."""
    return {
        "clientSamples": len(client),
        "sfuSamples": len(sfu),
        "roomIds": [s["roomId"] for s in client],
        "clientIds": [s["clientId"] for s in client],
        "userIds": [s["userId"] for s in client if s.get("userId")],
        "callIds": [s["callId"] for s in client if s.get("callId")],
        "sampleSeqs": [s.get("sampleSeq") for s in client],
        "sampleTimestamps": [s["timestamp"] for s in client],
        "peerConnectionIds": _element_values(client, _PC_ELEMENTS + _INBOUND + _OUTBOUND, "peerConnectionId"),
        "inboundTrackIds": _element_values(client, _INBOUND, "trackId"),
        "outboundTrackIds": _element_values(client, _OUTBOUND, "trackId"),
        "inboundSsrcs": _element_values(client, _INBOUND, "ssrc"),
        "outboundSsrcs": _element_values(client, _OUTBOUND, "ssrc"),
        "sfuStreamIds": _element_values(client, _INBOUND + _OUTBOUND, "sfuStreamId"),
        "sfuSinkIds": _element_values(client, _INBOUND, "sfuSinkId"),
        "sfuIds": [s["sfuId"] for s in sfu],
        "sfuTimestamps": [s["timestamp"] for s in sfu],
        "sfuTransportIds": _element_values(sfu, ["transports"], "transportId"),
        "sfuInboundRtpPadIds": _element_values(sfu, ["inboundRtpPads"], "padId"),
        "sfuOutboundRtpPadIds": _element_values(sfu, ["outboundRtpPads"], "padId"),
        "sfuStreamIdsOnPads": _element_values(sfu, ["inboundRtpPads", "outboundRtpPads"], "streamId"),
        "sfuSinkIdsOnPads": _element_values(sfu, ["outboundRtpPads"], "sinkId"),
        "padSsrcs": _element_values(sfu, ["inboundRtpPads", "outboundRtpPads"], "ssrc"),
        "sctpChannelIds": _element_values(sfu, ["sctpChannels"], "channelId"),
    }


def assert_contains(expected: dict[str, Any], client: list[Sample], sfu: list[Sample]) -> None:
    got = contained_ids(client, sfu)
    for key, want in expected.items():
        assert key in got, f"manifest key {key} is not checked"
        if key in ("sampleTimestamps", "sfuTimestamps"):
            # the decoder truncates the fractional ClientSample.timestamp real monitors send to epoch ms
            assert got[key] == [int(value) for value in want], key
        elif isinstance(want, list):
            # peerConnectionIds and sfuStreamIdsOnPads are listed once per id
            assert set(got[key]) == set(want), key
            assert all(isinstance(value, type(want[0])) for value in got[key]), key
        else:
            assert got[key] == want, key


def accepted_indexes(verdicts: Any) -> set[int]:
    """``sampleVerdicts`` as a list by index, or a mapping index -> verdict."""
    items = verdicts.items() if isinstance(verdicts, dict) else enumerate(verdicts)
    return {int(index) for index, verdict in items if verdict == "accept"}


@requires_fixtures
def test_the_fixture_set_covers_both_formats_and_sample_kinds() -> None:
    files = manifest_files()
    assert {entry["format"] for entry in files} == {"json", "protobuf"}
    assert sum(entry["contains"]["sfuSamples"] for entry in files) > 0
    assert sum(entry["contains"]["clientSamples"] for entry in files) > 0


@requires_fixtures
@pytest.mark.parametrize("entry", manifest_files(), ids=frame_id)
def test_frame_decodes_to_the_manifest_ids_and_verdict(entry: dict[str, Any]) -> None:
    params = query(entry)
    data = frame_bytes(entry)
    if entry["verdict"] == "reject":
        with pytest.raises(SamplesError):
            make_decoder(params.get("format"), params.get("schemaVersion")).decode(data)
        return
    decoded = make_decoder(params.get("format"), params.get("schemaVersion")).decode(data)
    verdicts = entry.get("sampleVerdicts")
    if verdicts is None:
        assert decoded.rejected == []
    else:
        rejected = {r.index for r in decoded.rejected if r.kind == "client"}
        total = len(decoded.client_samples) + len(rejected)
        assert set(range(total)) - rejected == accepted_indexes(verdicts)
    assert_contains(entry["contains"], decoded.client_samples, decoded.sfu_samples)


@requires_fixtures
@pytest.mark.parametrize("entry", manifest_files(), ids=frame_id)
def test_identity_fields_have_the_normalized_types(entry: dict[str, Any]) -> None:
    params = query(entry)
    decoded = make_decoder(params.get("format"), params.get("schemaVersion")).decode(frame_bytes(entry))
    for sample in decoded.client_samples:
        assert isinstance(sample["timestamp"], int)
        assert isinstance(sample["clientId"], str) and isinstance(sample["roomId"], str)
        assert sample.get("timeZoneOffsetInHours") is None or isinstance(sample["timeZoneOffsetInHours"], int)
        for array in _INBOUND + _OUTBOUND:
            for track in sample.get(array, ()):
                assert isinstance(track["ssrc"], int)
                assert isinstance(track["trackId"], str) and isinstance(track["peerConnectionId"], str)
    for sample in decoded.sfu_samples:
        assert isinstance(sample["timestamp"], int) and isinstance(sample["sfuId"], str)
        for pad in sample.get("inboundRtpPads", []) + sample.get("outboundRtpPads", []):
            assert isinstance(pad["ssrc"], int) and isinstance(pad["padId"], str)
