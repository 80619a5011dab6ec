"""Schema-driven payload building: every report payload has exactly its .avsc field names,
value types per schema and all required fields set.

The 18 report schemas (and the sample sub-records used by CALL_META_DATA payloads) are read once
from the package data. For each (schema, field sources) pair a small function is generated that
reads every field from its source mapping, coerces it to the schema type and returns the payload
dict (or None when a required field is missing). The generated code is straight-line so the common
case (the value already has the right type) costs one class check per field, and the mismatches
every monitor sends (ints in double fields, fractional ints) are converted inline; building reports
is the observer's hot path (scripts/bench_reports.py measures it).

Coercion rules (monitors send stats that do not follow the schema types):
- int/long: int as is; float truncated toward zero (Jackson does the same); bool -> 0/1; numeric
  strings parsed. int fields outside the 32-bit range, NaN and infinities cannot be coerced.
- float/double: int -> float; numeric strings parsed.
- string: numbers rendered (``111`` -> ``"111"``), bools as ``true``/``false``, dicts and lists as JSON.
- boolean: bool as is; 0/1 and ``"true"``/``"false"``.
A value that cannot be coerced becomes None; it is counted per (schema, field) and logged once.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import attrs
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from observer.reports.model import SCHEMA_NAME, ReportType

log = logging.getLogger(__name__)

SAMPLES_SCHEMA_FILE = "SamplesAvro_2.2.0.avsc"

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@attrs.frozen(slots=True)
class FieldSpec:
    name: str
    type: str  # one of: string, int, long, float, double, boolean
    required: bool


# Where a payload field is read from: alternatives tried in order until one yields a value
# (after coercion). Each alternative is (mapping, key); mapping is "el" (the sample element),
# "ex" (values computed for this element) or "ctx" (values shared by every report of one sample:
# a payload built by another generated builder, so it holds every key already coerced and is read
# without checks). An empty tuple means the field is always None.
Source = tuple[tuple[str, str], ...]
PayloadFn = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], "dict[str, Any] | None"]

_MAPPINGS = ("el", "ctx", "ex")


# --------------------------------------------------------------------------------------------
# Accounting of what the builders had to discard

class ReportIssues:
    """Counts uncoercible values and dropped reports; logs the first occurrence of each key."""

    def __init__(self) -> None:
        self.coercion_failures: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()

    def coercion_failed(self, schema: str, field: str, value: Any) -> None:
        key = (schema, field)
        self.coercion_failures[key] += 1
        if self.coercion_failures[key] == 1:
            log.warning("%s.%s: cannot coerce %.100r to the schema type; set to null "
                        "(logged once per field)", schema, field, value)

    def report_dropped(self, schema: str, reason: str) -> None:
        key = (schema, reason)
        self.dropped[key] += 1
        if self.dropped[key] == 1:
            log.warning("%s dropped: %s (logged once per reason)", schema, reason)


ISSUES = ReportIssues()


class ReportIssuesCollector(Collector):
    """Exposes ``ISSUES`` (process-wide counters) to a prometheus registry."""

    def __init__(self, issues: ReportIssues = ISSUES) -> None:
        self._issues = issues

    def collect(self) -> Iterable[CounterMetricFamily]:
        failures = CounterMetricFamily(
            "observertc_report_field_coercion_failures",
            "Sample values that could not be coerced to the report schema type (set to null)",
            labels=["schema", "field"])
        for (schema, field), n in sorted(self._issues.coercion_failures.items()):
            failures.add_metric([schema, field], n)
        dropped = CounterMetricFamily(
            "observertc_reports_dropped",
            "Reports (or whole samples) the report builders dropped",
            labels=["schema", "reason"])
        for (schema, reason), n in sorted(self._issues.dropped.items()):
            dropped.add_metric([schema, reason], n)
        return [failures, dropped]


def register_report_metrics(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    registry = registry if registry is not None else CollectorRegistry()
    registry.register(ReportIssuesCollector())
    return registry


# --------------------------------------------------------------------------------------------
# Slow-path coercers (called only when the value's class is not already the schema type)

def _to_int(v: Any, lo: int, hi: int) -> int | None:
    if v.__class__ is int or v.__class__ is bool:
        r = int(v)
    elif isinstance(v, float):
        if not math.isfinite(v):
            return None
        r = int(v)
    elif isinstance(v, int):
        r = int(v)
    elif isinstance(v, str):
        try:
            r = int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None
            if not math.isfinite(f):
                return None
            r = int(f)
    else:
        return None
    return r if lo <= r <= hi else None


def to_int32(v: Any) -> int | None:
    return _to_int(v, _INT32_MIN, _INT32_MAX)


def to_int64(v: Any) -> int | None:
    return _to_int(v, _INT64_MIN, _INT64_MAX)


def to_float(v: Any) -> float | None:
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def to_str(v: Any) -> str | None:
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict | list | tuple):
        try:
            return orjson.dumps(v).decode()
        except TypeError:
            return None
    return None


def to_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return None


_SLOW_COERCERS: dict[str, Callable[[Any], Any]] = {
    "string": to_str,
    "int": to_int32,
    "long": to_int64,
    "float": to_float,
    "double": to_float,
    "boolean": to_bool,
}

# The generated test that a value {v} already has the schema type (None fails it). Python ints
# beyond int64 cannot come out of the JSON/protobuf decoders in practice, so long fields only check
# the class (the slow path still checks the range).
_HAS_TYPE = {
    "string": "{v}.__class__ is str",
    "int": f"{{v}}.__class__ is int and {_INT32_MIN} <= {{v}} <= {_INT32_MAX}",
    "long": "{v}.__class__ is int",
    "float": "{v}.__class__ is float",
    "double": "{v}.__class__ is float",
    "boolean": "{v}.__class__ is bool",
}
# (test, conversion) done inline for the mismatches monitors send on every sample (ints in double
# fields, fractional numbers in int/long fields, numbers in string fields); the result is what the
# slow coercer gives. A float strictly between lo - 1 and hi + 1 truncates into [lo, hi].
_INLINE_CONVERSION: dict[str, tuple[str, str] | None] = {
    "string": ("{v}.__class__ is int", "str({v})"),
    "int": (f"{{v}}.__class__ is float and {float(_INT32_MIN - 1)!r} < {{v}} < {float(_INT32_MAX + 1)!r}",
            "int({v})"),
    "long": (f"{{v}}.__class__ is float and {float(_INT64_MIN)!r} <= {{v}} < {float(_INT64_MAX + 1)!r}",
             "int({v})"),
    "float": ("{v}.__class__ is int", "float({v})"),
    "double": ("{v}.__class__ is int", "float({v})"),
    "boolean": None,
}


def coerce(value: Any, type_: str) -> Any:
    """Coerce one value to an avro primitive type name; None when impossible."""
    if value is None:
        return None
    return _SLOW_COERCERS[type_](value)


# --------------------------------------------------------------------------------------------
# Schema loading

def _schema_text(*parts: str) -> str:
    return importlib.resources.files("observer").joinpath("schemas", *parts).read_text("utf-8")


def _field_type(avro_type: Any) -> tuple[str, bool]:
    """(primitive type, required) of an avro field type; enums are strings."""
    required = True
    if isinstance(avro_type, list):
        members = [t for t in avro_type if t != "null"]
        required = len(members) == len(avro_type)
        if len(members) != 1:
            raise ValueError(f"unsupported union {avro_type!r}")
        avro_type = members[0]
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "enum":
            return "string", required
        raise ValueError(f"unsupported field type {avro_type!r}")
    if avro_type == "bytes":
        return "string", required
    if avro_type not in _SLOW_COERCERS:
        raise ValueError(f"unsupported field type {avro_type!r}")
    return avro_type, required


def _fields_of(record: Mapping[str, Any]) -> tuple[FieldSpec, ...]:
    out = []
    for f in record["fields"]:
        type_, required = _field_type(f["type"])
        out.append(FieldSpec(f["name"], type_, required))
    return tuple(out)


@cache
def report_fields(report_type: ReportType) -> tuple[FieldSpec, ...]:
    """The fields of a report type's schema, in declaration order."""
    schema = orjson.loads(_schema_text("reports", f"{SCHEMA_NAME[report_type]}.avsc"))
    return _fields_of(schema)


@cache
def _sample_records() -> dict[str, tuple[FieldSpec, ...]]:
    found: dict[str, tuple[FieldSpec, ...]] = {}

    def walk(t: Any) -> None:
        if isinstance(t, list):
            for member in t:
                walk(member)
        elif isinstance(t, dict):
            if t.get("type") == "record":
                if t["name"] not in found:
                    try:
                        found[t["name"]] = _fields_of(t)
                    except ValueError:  # records holding records or arrays are not flat payloads
                        pass
                for f in t["fields"]:
                    walk(f["type"])
            elif t.get("type") == "array":
                walk(t["items"])

    walk(orjson.loads(_schema_text(SAMPLES_SCHEMA_FILE)))
    return found


def sample_record_fields(record_name: str) -> tuple[FieldSpec, ...]:
    """The fields of a flat record of the samples schema (e.g. ``Engine``, ``MediaCodecStats``)."""
    return _sample_records()[record_name]


# --------------------------------------------------------------------------------------------
# Code generation

def compile_payload(schema: str, fields: Sequence[FieldSpec],
                    sources: Mapping[str, Source] | None = None) -> PayloadFn:
    """Generate ``fn(el, ctx, ex) -> payload | None`` for the given fields.

    ``sources`` maps a field name to where it is read from; fields not listed are read from ``el``
    under their own name. ``schema`` names the schema in the issue counters. The payload is None
    when a required field has no value; that drop is counted.

    The payload starts as a copy of an all-None template and gets the present values stored into
    it: copying a prebuilt dict and replacing values costs far less than building a dict of 50
    keys (a dict display or ``dict(zip())`` inserts and hashes every key anew).
    """
    sources = dict(sources or {})
    unknown = set(sources) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"{schema}: sources for unknown fields {sorted(unknown)}")
    lines = ["def build(el, ctx, ex):"]
    used = {mapping for alternatives in sources.values() for mapping, _ in alternatives}
    if len(sources) < len(fields):
        used.add("el")
    lines += [f"    {mapping}_get = {mapping}.get" for mapping in ("el", "ex") if mapping in used]
    lines.append("    p = _new_payload()")
    for f in fields:
        alternatives = sources.get(f.name, (("el", f.name),))
        lines.append(f"    # {f.name}")
        for mapping, _ in alternatives:
            if mapping not in _MAPPINGS:
                raise ValueError(f"{schema}.{f.name}: unknown source mapping {mapping!r}")
        if not alternatives:
            continue  # stays None
        if len(alternatives) == 1 and not f.required:
            lines += _store_lines(f, *alternatives[0])
            continue
        for n, (mapping, key) in enumerate(alternatives):
            indent = "    "
            if n > 0:
                lines.append("    if v is None:")
                indent = "        "
            lines += _local_lines(f, mapping, key, indent)
        if f.required:
            lines.append("    if v is None:")
            lines.append(f"        return _missing({f.name!r})")
        lines.append(f"    p[{f.name!r}] = v")
    lines.append("    return p")
    # interned keys: the generated code's literals are interned, so its stores find them by identity
    template = dict.fromkeys(sys.intern(f.name) for f in fields)
    namespace: dict[str, Any] = {"_missing": _missing_reporter(schema), "_new_payload": template.copy}
    for type_ in {f.type for f in fields}:
        namespace[f"_coerce_{type_}"] = _slow_path(schema, _SLOW_COERCERS[type_])
    exec(compile("\n".join(lines), f"<payload builder {schema}>", "exec"), namespace)
    fn: PayloadFn = namespace["build"]
    return fn


def _store_lines(f: FieldSpec, mapping: str, key: str) -> list[str]:
    """Generated code storing ``f``'s value read from one source into the payload ``p`` (left None
    when absent)."""
    target = f"p[{f.name!r}]"
    if mapping == "ctx":
        # the context was built by a payload builder itself: every key is there, coerced
        return [f"    {target} = ctx[{key!r}]"]
    lines = [f"    v = {mapping}_get({key!r})",
             f"    if {_HAS_TYPE[f.type].format(v='v')}:",
             f"        {target} = v",
             "    elif v is not None:"]
    inline = _INLINE_CONVERSION[f.type]
    if inline is None:
        lines.append(f"        {target} = _coerce_{f.type}(v, {f.name!r})")
    else:
        test, conversion = inline
        lines += [f"        if {test.format(v='v')}:",
                  f"            {target} = {conversion.format(v='v')}",
                  "        else:",
                  f"            {target} = _coerce_{f.type}(v, {f.name!r})"]
    return lines


def _local_lines(f: FieldSpec, mapping: str, key: str, indent: str) -> list[str]:
    """Generated code reading ``f``'s value from one source into the local ``v`` (None when absent
    or not coercible)."""
    if mapping == "ctx":
        return [f"{indent}v = ctx[{key!r}]"]
    lines = [f"{indent}v = {mapping}_get({key!r})",
             f"{indent}if not ({_HAS_TYPE[f.type].format(v='v')}):"]
    keyword = "if"
    inline = _INLINE_CONVERSION[f.type]
    if inline is not None:
        test, conversion = inline
        lines += [f"{indent}    if {test.format(v='v')}:",
                  f"{indent}        v = {conversion.format(v='v')}"]
        keyword = "elif"
    lines += [f"{indent}    {keyword} v is not None:",
              f"{indent}        v = _coerce_{f.type}(v, {f.name!r})"]
    return lines


def compile_report(report_type: ReportType, context_names: Sequence[str],
                   extra: Mapping[str, Source] | None = None) -> PayloadFn:
    """The payload builder of ``report_type``: fields named in ``context_names`` come from the
    per-sample context, ``extra`` overrides where other fields come from, the rest from the element."""
    fields = report_fields(report_type)
    names = {f.name for f in fields}
    sources: dict[str, Source] = {k: (("ctx", k),) for k in context_names if k in names}
    sources.update(extra or {})
    return compile_payload(report_type.value, fields, sources)


def _slow_path(schema: str, coercer: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def coerce_or_count(v: Any, field: str) -> Any:
        r = coercer(v)
        if r is None:
            ISSUES.coercion_failed(schema, field, v)
        return r
    return coerce_or_count


def _missing_reporter(schema: str) -> Callable[[str], None]:
    def missing(field: str) -> None:
        ISSUES.report_dropped(schema, f"missing required field {field}")
    return missing


@cache
def _plain_report_builder(report_type: ReportType) -> PayloadFn:
    return compile_payload(report_type.value, report_fields(report_type))


def conform(report_type: ReportType, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema-conforming payload of ``values`` (keys = report field names; other keys are
    ignored, absent ones are null). None when a required field is missing (counted)."""
    return _plain_report_builder(report_type)(values, _EMPTY, _EMPTY)


_EMPTY: Mapping[str, Any] = {}
