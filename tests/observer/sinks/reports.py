"""Conforming test reports of every type, built from the report .avsc schemas (every field set)."""

from __future__ import annotations

import importlib.resources
import uuid
from functools import cache
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from observer.reports.model import SCHEMA_NAME, Report, ReportType

SERVICE_ID = "test-service"
CALL_ID = "7f3a3c52-6a56-4b1e-9f5e-1f6c2f0a9b11"
SFU_ID = "0b5d8c1e-2f3a-4e5b-8c6d-7e8f9a0b1c2d"


@cache
def schema_fields(report_type: ReportType) -> list[tuple[str, Any]]:
    text = (importlib.resources.files("observer").joinpath("schemas", "reports", f"{SCHEMA_NAME[report_type]}.avsc")
            .read_bytes())
    return [(f["name"], f["type"]) for f in orjson.loads(text)["fields"]]


def _value(name: str, avro_type: Any, index: int) -> Any:
    if isinstance(avro_type, list):
        avro_type = next(t for t in avro_type if t != "null")
    if name == "serviceId":
        return SERVICE_ID
    if name == "callId":
        return CALL_ID
    if name == "sfuId":
        return SFU_ID
    if avro_type == "string":
        return f"{name}-{index}"
    if avro_type in ("int", "long"):
        return 1000 + index
    if avro_type in ("float", "double"):
        return 0.5 + index
    if avro_type == "boolean":
        return index % 2 == 0
    raise ValueError(f"{name}: unexpected avro type {avro_type!r}")


def make_report(report_type: ReportType, index: int = 0, **overrides: Any) -> Report:
    payload = {name: _value(name, avro_type, index) for name, avro_type in schema_fields(report_type)}
    payload.update(overrides)
    return Report(report_type, payload)


def all_types(index: int = 0, **overrides: Any) -> list[Report]:
    """One report of each of the 18 types."""
    return [make_report(t, index, **overrides) for t in ReportType]


def many(count: int, report_type: ReportType = ReportType.CALL_EVENT) -> list[Report]:
    return [make_report(report_type, i, clientId=str(uuid.uuid4())) for i in range(count)]


def metric(registry: CollectorRegistry, name: str, sink: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"sink": sink, **labels}) or 0.0


def counts(registry: CollectorRegistry, sink: str) -> dict[str, float]:
    """sent / failed / dropped (all reasons) / retried of one sink."""
    dropped = sum(
        s.value for m in registry.collect() if m.name == "observertc_sink_reports_dropped"
        for s in m.samples if s.name.endswith("_total") and s.labels.get("sink") == sink
    )
    return {
        "sent": metric(registry, "observertc_sink_reports_sent_total", sink),
        "failed": metric(registry, "observertc_sink_reports_failed_total", sink),
        "dropped": dropped,
        "retried": metric(registry, "observertc_sink_reports_retried_total", sink),
    }
