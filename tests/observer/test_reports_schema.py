"""Schema loading, value coercion, generated payload builders and their drop accounting."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from observer.reports.model import ReportType
from observer.reports.schema import (
    ISSUES,
    FieldSpec,
    ReportIssues,
    ReportIssuesCollector,
    coerce,
    compile_payload,
    conform,
    register_report_metrics,
    report_fields,
    sample_record_fields,
)
from tests.observer.test_reports_conformance import avsc_fields


@pytest.mark.parametrize("report_type", list(ReportType))
def test_report_fields_follow_the_avsc(report_type: ReportType) -> None:
    fields = report_fields(report_type)
    raw = avsc_fields(report_type)
    assert [f.name for f in fields] == [f["name"] for f in raw]
    for spec, field in zip(fields, raw, strict=True):
        assert spec.required == (not isinstance(field["type"], list))


def test_sample_records_are_loaded_flat() -> None:
    assert [f.name for f in sample_record_fields("MediaCodecStats")] == [
        "payloadType",
        "codecType",
        "mimeType",
        "clockRate",
        "channels",
        "sdpFmtpLine",
    ]
    assert {f.type for f in sample_record_fields("MediaDevice")} == {"string"}  # the kind enum is a string
    with pytest.raises(KeyError):
        sample_record_fields("ClientSample")  # holds arrays: not a flat payload


@pytest.mark.parametrize(
    ("value", "type_", "expected"),
    [
        (0.9, "int", 0),
        (-2.7, "int", -2),
        ("17", "int", 17),
        ("17.9", "int", 17),
        (True, "int", 1),
        (2**31, "int", None),
        (-(2**31) - 1, "int", None),
        (2**31, "long", 2**31),
        (2**63, "long", None),
        (math.inf, "long", None),
        (math.nan, "int", None),
        ("x", "int", None),
        ([1], "int", None),
        ("1e3", "long", 1000),
        (3, "double", 3.0),
        ("0.25", "double", 0.25),
        ("abc", "double", None),
        (None, "double", None),
        ({}, "double", None),
        (111, "string", "111"),
        (1.5, "string", "1.5"),
        (False, "string", "false"),
        ({"a": [1]}, "string", '{"a":[1]}'),
        (b"x", "string", None),
        (1, "boolean", True),
        (0, "boolean", False),
        ("TRUE", "boolean", True),
        ("false", "boolean", False),
        (2, "boolean", None),
        ("yes", "boolean", None),
    ],
)
def test_coerce(value: Any, type_: str, expected: Any) -> None:
    result = coerce(value, type_)
    assert result == expected
    if expected is not None:
        assert type(result) is type(expected)


def test_conform_keeps_schema_fields_only_and_nulls_the_rest() -> None:
    payload = conform(
        ReportType.SFU_EXTENSION_DATA,
        {"serviceId": "s", "timestamp": 5.9, "extensionType": "T", "unknown": 1},
    )
    assert payload == {
        "serviceId": "s",
        "mediaUnitId": None,
        "marker": None,
        "timestamp": 5,
        "sfuId": None,
        "extensionType": "T",
        "payload": None,
    }


def test_conform_without_a_required_field_is_none_and_counted() -> None:
    before = ISSUES.dropped[("SFU_EXTENSION_DATA", "missing required field extensionType")]
    assert conform(ReportType.SFU_EXTENSION_DATA, {"serviceId": "s", "timestamp": 1}) is None
    assert ISSUES.dropped[("SFU_EXTENSION_DATA", "missing required field extensionType")] == before + 1


@pytest.mark.parametrize("report_type", list(ReportType))
def test_every_report_type_has_a_builder_that_requires_its_required_fields(report_type: ReportType) -> None:
    assert conform(report_type, {}) is None
    full: dict[str, Any] = {}
    for f in report_fields(report_type):
        full[f.name] = {"string": "x", "int": 1, "long": 2, "double": 0.5, "float": 0.5, "boolean": True}[
            f.type
        ]
    payload = conform(report_type, full)
    assert payload is not None and list(payload) == [f.name for f in report_fields(report_type)]


def test_sources_alternatives_and_constant_null() -> None:
    fields = (
        FieldSpec("a", "string", True),
        FieldSpec("b", "long", False),
        FieldSpec("c", "int", False),
        FieldSpec("d", "double", False),
    )
    build = compile_payload(
        "T",
        fields,
        {
            "a": (("ex", "x"), ("el", "a")),
            "b": (("el", "b"), ("ctx", "b")),
            "c": (),
        },
    )
    assert build({"a": "own", "b": 3, "c": 9, "d": 1}, {"b": 7}, {}) == {
        "a": "own",
        "b": 3,
        "c": None,
        "d": 1.0,
    }
    assert build({"a": "own", "b": "junk"}, {"b": 7}, {"x": "extra"}) == {
        "a": "extra",
        "b": 7,
        "c": None,
        "d": None,
    }
    assert build({}, {"b": 7}, {}) is None


def test_compile_rejects_unknown_fields_and_mappings() -> None:
    fields = (FieldSpec("a", "string", False),)
    with pytest.raises(ValueError, match="unknown fields"):
        compile_payload("T", fields, {"zzz": ()})
    with pytest.raises(ValueError, match="unknown source mapping"):
        compile_payload("T", fields, {"a": (("elsewhere", "a"),)})


def test_coercion_failures_are_counted_per_field_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    build = compile_payload("LogOnceSchema", (FieldSpec("n", "int", False),))
    with caplog.at_level(logging.WARNING, logger="observer.reports.schema"):
        for _ in range(3):
            assert build({"n": "not a number"}, {}, {}) == {"n": None}
    assert ISSUES.coercion_failures[("LogOnceSchema", "n")] == 3
    assert len([r for r in caplog.records if "LogOnceSchema.n" in r.getMessage()]) == 1


def test_issues_are_exposed_as_prometheus_counters() -> None:
    issues = ReportIssues()
    issues.coercion_failed("INBOUND_AUDIO_TRACK", "jitter", "x")
    issues.report_dropped("CALL_EVENT", "missing required field name")
    issues.report_dropped("CALL_EVENT", "missing required field name")
    registry = CollectorRegistry()
    registry.register(ReportIssuesCollector(issues))
    assert (
        registry.get_sample_value(
            "observertc_report_field_coercion_failures_total",
            {"schema": "INBOUND_AUDIO_TRACK", "field": "jitter"},
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "observertc_reports_dropped_total",
            {"schema": "CALL_EVENT", "reason": "missing required field name"},
        )
        == 2
    )


def test_register_report_metrics_uses_the_given_registry() -> None:
    registry = CollectorRegistry()
    assert register_report_metrics(registry) is registry
    conform(ReportType.CALL_EVENT, {"serviceId": "s", "timestamp": 1})
    assert (
        registry.get_sample_value(
            "observertc_reports_dropped_total",
            {"schema": "CALL_EVENT", "reason": "missing required field name"},
        )
        or 0
    ) >= 1
    assert isinstance(register_report_metrics(), CollectorRegistry)


# the generated builders convert the common mismatches inline, without the slow coercers: the
# result (value, type, counted failure) must be the slow coercer's for every value, boundaries included
_EDGE_VALUES: list[Any] = [
    None, 0, 1, -1, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, -(2**63),
    0.0, -0.0, 0.9, -0.9, 1.5, -2.7, 2147483647.9, 2147483648.0, -2147483648.9, -2147483649.0,
    9.2e18, -9.2e18, 9223372036854775807.0, -9223372036854775808.0, 1e300, math.inf, -math.inf, math.nan,
    True, False, "", "12", "12.5", " 7 ", "abc", "true", "nan", [], [1], {}, {"a": 1},
]
_TYPES = ("string", "int", "long", "float", "double", "boolean")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("type_", _TYPES)
def test_generated_builders_coerce_every_value_like_the_slow_coercer(type_: str, required: bool) -> None:
    schema = f"EdgeSchema-{type_}-{required}"
    build = compile_payload(schema, (FieldSpec("v", type_, required),))
    for value in _EDGE_VALUES:
        expected = coerce(value, type_)
        failures = ISSUES.coercion_failures[(schema, "v")]
        payload = build({"v": value}, {}, {})
        if required and expected is None:
            assert payload is None, value
        else:
            assert payload is not None and _same(payload["v"], expected), (value, payload)
        counted = ISSUES.coercion_failures[(schema, "v")] - failures
        assert counted == (1 if value is not None and expected is None else 0), value


def test_payloads_are_independent_dicts_in_schema_order() -> None:
    fields = (FieldSpec("z", "string", False), FieldSpec("a", "long", False), FieldSpec("m", "double", False))
    build = compile_payload("T", fields)
    first = build({"a": 1, "m": 2}, {}, {})
    assert first is not None and list(first) == ["z", "a", "m"]
    first["z"] = "changed"
    second = build({}, {}, {})
    assert second == {"z": None, "a": None, "m": None}
    assert second is not first


def test_a_required_field_stops_the_builder_before_later_fields_are_coerced() -> None:
    fields = (FieldSpec("before", "int", False), FieldSpec("key", "string", True), FieldSpec("after", "int", False))
    build = compile_payload("OrderSchema", fields)
    assert build({"before": "x", "after": "y"}, {}, {}) is None
    assert ISSUES.coercion_failures[("OrderSchema", "before")] == 1
    assert ISSUES.coercion_failures[("OrderSchema", "after")] == 0
    assert ISSUES.dropped[("OrderSchema", "missing required field key")] == 1
