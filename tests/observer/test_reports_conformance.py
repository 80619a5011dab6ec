"""Every report built from every recorded fixture frame conforms to its .avsc, and the per-frame
report counts equal the manifest's ``expectedSampleReports``.

The validator here reads the .avsc files on its own (it does not use observer.reports.schema), so it
checks the builders against the schema files rather than against their own reading of them. Other
report tests import the helpers of this module.
"""

from __future__ import annotations

import collections
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from observer.reports.client import build_client_reports
from observer.reports.model import SCHEMA_NAME, SCHEMA_VERSION, Report, ReportType
from observer.reports.sfu import build_sfu_reports
from observer.samples.decoder import make_decoder
from tests.shared_paths import FIXTURES

SCHEMAS = Path(__file__).resolve().parents[2] / "observer" / "schemas" / "reports"
CALL_ID = "3f0f7c1e-1b0c-4c55-9e59-1e6f1d1b7a11"

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


# ------------------------------------------------------------------------------------------
# an independent avsc validator


@cache
def avsc_fields(report_type: ReportType) -> list[dict[str, Any]]:
    schema = json.loads((SCHEMAS / f"{SCHEMA_NAME[report_type]}.avsc").read_text())
    return list(schema["fields"])


def _value_errors(name: str, avro_type: Any, value: Any) -> list[str]:
    if isinstance(avro_type, list):
        if value is None:
            return [] if "null" in avro_type else [f"{name}: null in a required field"]
        (avro_type,) = [t for t in avro_type if t != "null"]
    if value is None:
        return [f"{name}: null in a required field"]
    ok = {
        "string": lambda v: type(v) is str,
        "int": lambda v: type(v) is int and _INT32[0] <= v <= _INT32[1],
        "long": lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1],
        "double": lambda v: type(v) is float,
        "float": lambda v: type(v) is float,
        "boolean": lambda v: type(v) is bool,
    }[avro_type](value)
    return [] if ok else [f"{name}: {value!r} is not an avro {avro_type}"]


def schema_errors(report: Report) -> list[str]:
    """What makes ``report`` not conform to its .avsc (empty when it conforms)."""
    fields = avsc_fields(report.type)
    names = [f["name"] for f in fields]
    if list(report.payload) != names:
        return [f"payload keys {list(report.payload)} != schema fields {names}"]
    errors = []
    for f in fields:
        errors += _value_errors(f["name"], f["type"], report.payload[f["name"]])
    if report.schema_version != SCHEMA_VERSION:
        errors.append(f"schemaVersion {report.schema_version}")
    return errors


def assert_conforms(report: Report) -> None:
    errors = schema_errors(report)
    assert not errors, f"{report.type.value}: {errors}"


# ------------------------------------------------------------------------------------------
# fixture frames


@cache
def manifest() -> dict[str, Any]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def frame_entries(fmt: str | None = None) -> list[dict[str, Any]]:
    return [f for f in manifest()["files"] if fmt is None or f["format"] == fmt]


@cache
def _decoded(file: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entry = next(f for f in manifest()["files"] if f["file"] == file)
    decoded = make_decoder(entry["format"], entry["schemaVersion"]).decode((FIXTURES / file).read_bytes())
    return decoded.client_samples, decoded.sfu_samples


def decoded_frame(file: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(client samples, sfu samples) of a fixture frame, decoded by the observer's decoder (fresh copies)."""
    return copy.deepcopy(_decoded(file))


def raw_json_frame(file: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A JSON fixture frame exactly as the monitor sent it (fractional timestamps, unknown keys)."""
    root = orjson.loads((FIXTURES / file).read_bytes())
    return root.get("clientSamples", []), root.get("sfuSamples", [])


def all_fixture_reports() -> list[Report]:
    reports = []
    for entry in frame_entries():
        clients, sfus = decoded_frame(entry["file"])
        for sample in clients:
            reports += build_client_reports(
                sample, service_id=entry["serviceId"], media_unit_id=entry["mediaUnitId"], call_id=CALL_ID
            )
        for sample in sfus:
            reports += build_sfu_reports(
                sample, service_id=entry["serviceId"], media_unit_id=entry["mediaUnitId"]
            )
    return reports


def _manifest_counts(reports: list[Report]) -> dict[str, int]:
    # the manifest names custom events "CALL_EVENT(custom)" / "SFU_EVENT(custom)"
    counts: collections.Counter[str] = collections.Counter()
    for r in reports:
        key = r.type.value
        counts[f"{key}(custom)" if r.type in (ReportType.CALL_EVENT, ReportType.SFU_EVENT) else key] += 1
    return dict(counts)


def _build_frame(entry: dict[str, Any], clients: list[Any], sfus: list[Any]) -> list[Report]:
    reports: list[Report] = []
    for sample in clients:
        reports += build_client_reports(
            sample, service_id=entry["serviceId"], media_unit_id=entry["mediaUnitId"], call_id=CALL_ID
        )
    for sample in sfus:
        reports += build_sfu_reports(
            sample, service_id=entry["serviceId"], media_unit_id=entry["mediaUnitId"]
        )
    return reports


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", frame_entries(), ids=lambda e: e["file"])
def test_decoded_fixture_frame_reports_conform_and_match_manifest_counts(entry: dict[str, Any]) -> None:
    reports = _build_frame(entry, *decoded_frame(entry["file"]))
    assert _manifest_counts(reports) == entry["expectedSampleReports"]
    for report in reports:
        assert_conforms(report)


@pytest.mark.parametrize("entry", frame_entries("json"), ids=lambda e: e["file"])
def test_raw_json_fixture_frame_reports_conform_and_match_manifest_counts(entry: dict[str, Any]) -> None:
    # without the decoder's normalization: fractional timestamps, numeric payloadType, W3C extra keys
    reports = _build_frame(entry, *raw_json_frame(entry["file"]))
    assert _manifest_counts(reports) == entry["expectedSampleReports"]
    for report in reports:
        assert_conforms(report)


def test_fixture_frames_cover_every_produced_report_type() -> None:
    produced = {r.type for r in all_fixture_reports()}
    never_produced = {ReportType.OBSERVER_EVENT, ReportType.SFU_META_DATA}
    assert produced == set(ReportType) - never_produced


def test_no_sample_key_leaks_into_a_payload() -> None:
    clients, _ = raw_json_frame("p2p-json/001-r1-alice-json-ws.bin")
    track = clients[0]["inboundAudioTracks"][0]
    assert {"codecId", "kind", "mid", "playoutId", "id", "type"} <= set(track)
    (report,) = [
        r
        for r in build_client_reports(clients[0], service_id="s", media_unit_id="m", call_id="c")
        if r.type is ReportType.INBOUND_AUDIO_TRACK and r.payload["ssrc"] == track["ssrc"]
    ]
    assert not {"codecId", "kind", "mid", "playoutId", "id", "type"} & set(report.payload)


# the validator itself must be able to fail


def _valid_call_event() -> Report:
    payload: dict[str, Any] = {f["name"]: None for f in avsc_fields(ReportType.CALL_EVENT)}
    payload.update(serviceId="s", timestamp=1, name="X")
    return Report(ReportType.CALL_EVENT, payload)


def test_validator_accepts_a_minimal_report() -> None:
    assert schema_errors(_valid_call_event()) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", 1.5),
        ("timestamp", None),
        ("sampleSeq", 2**31),
        ("SSRC", "1"),
        ("name", 3),
        ("sampleSeq", True),
    ],
)
def test_validator_rejects_wrong_values(field: str, value: Any) -> None:
    report = _valid_call_event()
    report.payload[field] = value
    assert schema_errors(report)


def test_validator_rejects_extra_missing_and_reordered_keys() -> None:
    extra = _valid_call_event()
    extra.payload["codecId"] = "x"
    missing = _valid_call_event()
    del missing.payload["SSRC"]
    reordered = _valid_call_event()
    reordered.payload["serviceId"] = reordered.payload.pop("serviceId")
    for report in (extra, missing, reordered):
        assert schema_errors(report)
