"""In-place normalization and validation of decoded sample dicts.

Only the identity fields the pipeline keys its entities on are normalized; stats fields are left as the
monitor sent them (the report builders coerce each one to its report schema type). Real monitors send
fractional numbers in integer fields (ClientSample.timestamp copies Chrome's RTCStats timestamp), numbers
where the schema says string, and unknown keys; the rules follow the reference's lenient Jackson decoding:
floats are truncated to int, numbers become strings, numeric strings become numbers, unknown keys stay.

After normalization a valid sample has:
- ``clientId`` + ``roomId`` (ClientSample) or ``sfuId`` (SfuSample) as non-empty strings and ``timestamp`` as
  an int (epoch ms);
- every other identity field that is present as a string or ``None`` (``""`` becomes ``None``) for ids, an int
  or ``None`` for ``sampleSeq`` / ``timeZoneOffsetInHours`` / ``ssrc``. Absent keys are not added (adding
  keys to thousands of element dicts per second costs more than ``dict.get`` downstream);
- every array field either absent or a list (a JSON ``null`` array is removed), object arrays holding dicts;
- every nested object field (engine, os, ...) a dict or ``None``.

A value that cannot be coerced, or a missing required id (ClientSample ``clientId`` / ``roomId``,
SfuSample ``sfuId``, ``timestamp``), makes that one sample invalid: the caller drops it and keeps the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from observer.samples.model import REASON_INVALID_FIELD, REASON_MISSING_FIELD, Sample

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class FieldProblem(Exception):
    """Raised inside normalization; ``field`` is the path of the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


def _to_id(value: Any, field: str) -> str | None:
    kind = type(value)
    if kind is str:
        return value or None
    if value is None:
        return None
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    raise FieldProblem(field, REASON_INVALID_FIELD)


def _to_int(value: Any, field: str, bounds: tuple[int, int]) -> int | None:
    kind = type(value)
    if kind is int:
        result = value
    elif value is None:
        return None
    elif kind is float:
        if not math.isfinite(value):
            raise FieldProblem(field, REASON_INVALID_FIELD)
        result = int(value)  # truncation toward zero, as Jackson's float-to-long coercion
    elif kind is str:
        result = _parse_int_text(value, field)
    else:  # bool, dict, list
        raise FieldProblem(field, REASON_INVALID_FIELD)
    if not bounds[0] <= result <= bounds[1]:
        raise FieldProblem(field, REASON_INVALID_FIELD)
    return result


def _parse_int_text(text: str, field: str) -> int:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise FieldProblem(field, REASON_INVALID_FIELD) from None
    if not math.isfinite(number):
        raise FieldProblem(field, REASON_INVALID_FIELD)
    return int(number)


def _required_id(sample: Sample, key: str) -> None:
    value = sample.get(key)
    if type(value) is not str or not value:
        value = _to_id(value, key)
        if value is None:
            raise FieldProblem(key, REASON_MISSING_FIELD)
        sample[key] = value


def _optional_id(sample: Sample, key: str) -> None:
    value = sample.get(key)
    if value is not None and (type(value) is not str or not value):
        sample[key] = _to_id(value, key)


def _timestamp(sample: Sample, override_ms: int | None) -> None:
    if override_ms is not None:
        sample["timestamp"] = override_ms
        return
    value = sample.get("timestamp")
    if value is None:
        raise FieldProblem("timestamp", REASON_MISSING_FIELD)
    if type(value) is not int or not _INT64[0] <= value <= _INT64[1]:
        sample["timestamp"] = _to_int(value, "timestamp", _INT64)


def _optional_int(sample: Sample, key: str, bounds: tuple[int, int]) -> None:
    value = sample.get(key)
    if value is not None and (type(value) is not int or not bounds[0] <= value <= bounds[1]):
        sample[key] = _to_int(value, key, bounds)


# (array key, id fields, ssrc field or None) for the arrays whose elements carry identity fields
_Element = tuple[str, tuple[str, ...], bool]

_CLIENT_ELEMENTS: tuple[_Element, ...] = (
    ("inboundAudioTracks", ("peerConnectionId", "trackId", "sfuStreamId", "sfuSinkId"), True),
    ("inboundVideoTracks", ("peerConnectionId", "trackId", "sfuStreamId", "sfuSinkId"), True),
    ("outboundAudioTracks", ("peerConnectionId", "trackId", "sfuStreamId"), True),
    ("outboundVideoTracks", ("peerConnectionId", "trackId", "sfuStreamId"), True),
    ("pcTransports", ("peerConnectionId",), False),
    ("iceCandidatePairs", ("peerConnectionId",), False),
    ("dataChannels", ("peerConnectionId",), False),
    ("iceLocalCandidates", ("peerConnectionId",), False),
    ("iceRemoteCandidates", ("peerConnectionId",), False),
)
_CLIENT_OBJECT_ARRAYS = (
    "mediaDevices",
    "extensionStats",
    "customCallEvents",
    "customObserverEvents",
    "mediaSources",
    "codecs",
    "certificates",
)
_CLIENT_STRING_ARRAYS = ("mediaConstraints", "userMediaErrors", "iceServers", "localSDPs")
_CLIENT_OBJECTS = ("engine", "platform", "browser", "os")

_SFU_ELEMENTS: tuple[_Element, ...] = (
    ("transports", ("transportId",), False),
    ("inboundRtpPads", ("transportId", "streamId", "padId"), True),
    (
        "outboundRtpPads",
        ("transportId", "streamId", "sinkId", "padId", "callId", "clientId", "trackId"),
        True,
    ),
    ("sctpChannels", ("transportId", "streamId", "channelId"), False),
)
_SFU_OBJECT_ARRAYS = ("customSfuEvents", "extensionStats")


def _array(sample: Sample, key: str) -> list[Any] | None:
    value = sample.get(key)
    if type(value) is list:
        return value
    if value is None:
        if key in sample:
            del sample[key]
        return None
    raise FieldProblem(key, REASON_INVALID_FIELD)


def _object_array(sample: Sample, key: str) -> None:
    items = _array(sample, key)
    if items:
        for index, item in enumerate(items):
            if type(item) is not dict:
                raise FieldProblem(f"{key}[{index}]", REASON_INVALID_FIELD)


def _elements(sample: Sample, spec: _Element) -> None:
    key, id_fields, has_ssrc = spec
    items = _array(sample, key)
    if not items:
        return
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise FieldProblem(f"{key}[{index}]", REASON_INVALID_FIELD)
        get = item.get
        try:
            for field in id_fields:
                value = get(field)
                if value is not None and (type(value) is not str or not value):
                    item[field] = _to_id(value, field)
            if has_ssrc:
                value = get("ssrc")
                if value is not None and (type(value) is not int or not _INT64[0] <= value <= _INT64[1]):
                    item["ssrc"] = _to_int(value, "ssrc", _INT64)
        except FieldProblem as problem:
            raise FieldProblem(f"{key}[{index}].{problem.field}", problem.reason) from None


def normalize_client_sample(sample: Sample, timestamp_override_ms: int | None = None) -> None:
    """Normalize a ClientSample in place; raises ``FieldProblem`` if it must be dropped."""
    if not _client_sample_is_normal(sample, timestamp_override_ms):
        _normalize_client_sample(sample, timestamp_override_ms)


def normalize_sfu_sample(sample: Sample, timestamp_override_ms: int | None = None) -> None:
    """Normalize an SfuSample in place; raises ``FieldProblem`` if it must be dropped."""
    if not _sfu_sample_is_normal(sample, timestamp_override_ms):
        _normalize_sfu_sample(sample, timestamp_override_ms)


def _normalize_client_sample(sample: Sample, timestamp_override_ms: int | None) -> None:
    _required_id(sample, "clientId")
    _required_id(sample, "roomId")
    _optional_id(sample, "callId")
    _optional_id(sample, "userId")
    _optional_id(sample, "marker")
    _timestamp(sample, timestamp_override_ms)
    _optional_int(sample, "sampleSeq", _INT32)
    _optional_int(sample, "timeZoneOffsetInHours", _INT32)
    for spec in _CLIENT_ELEMENTS:
        _elements(sample, spec)
    for key in _CLIENT_OBJECT_ARRAYS:
        _object_array(sample, key)
    for key in _CLIENT_STRING_ARRAYS:
        _array(sample, key)
    for key in _CLIENT_OBJECTS:
        value = sample.get(key)
        if value is not None and type(value) is not dict:
            raise FieldProblem(key, REASON_INVALID_FIELD)


def _normalize_sfu_sample(sample: Sample, timestamp_override_ms: int | None) -> None:
    _required_id(sample, "sfuId")
    _optional_id(sample, "marker")
    _timestamp(sample, timestamp_override_ms)
    _optional_int(sample, "timeZoneOffsetInHours", _INT32)
    for spec in _SFU_ELEMENTS:
        _elements(sample, spec)
    for key in _SFU_OBJECT_ARRAYS:
        _object_array(sample, key)


# --------------------------------------------------------------------------------------------
# The fast path: nearly every sample is already normal except for its fractional timestamp, and
# checking that with generated straight-line code costs a fraction of the general walk above
# (function calls, enumerate, per-field loops). The check changes nothing but the timestamp and
# returns False at the first value the general walk would change or reject; the caller then runs
# the general walk from the start, which raises the same problem for the same field as it always
# did (it is idempotent, and the timestamp step comes after the id checks in both).

_ABSENT = object()


def _compile_normal_check(
    name: str,
    required_ids: tuple[str, ...],
    optional_ids: tuple[str, ...],
    optional_ints: tuple[str, ...],
    elements: tuple[_Element, ...],
    object_arrays: tuple[str, ...],
    string_arrays: tuple[str, ...] = (),
    objects: tuple[str, ...] = (),
    rare: frozenset[str] = frozenset(),
) -> Callable[[Sample, int | None], bool]:
    """Generate ``check(sample, override) -> bool`` (see above). The checks of the ``rare`` keys
    (absent from nearly every sample) are skipped together by one set test."""
    int32 = f"{_INT32[0]} <= v <= {_INT32[1]}"
    int64 = f"{_INT64[0]} <= v <= {_INT64[1]}"
    lines = ["def check(sample, override):", "    get = sample.get"]
    for key in required_ids:
        lines += [f"    v = get({key!r})", "    if v.__class__ is not str or not v:", "        return False"]
    for key in optional_ids:
        lines += [f"    v = get({key!r})",
                  "    if v is not None and (v.__class__ is not str or not v):", "        return False"]
    lines += ["    v = get('timestamp')",
              f"    if override is not None or v.__class__ is not int or not {int64}:",
              "        _timestamp(sample, override)"]
    for key in optional_ints:
        lines += [f"    v = get({key!r})",
                  f"    if v is not None and (v.__class__ is not int or not {int32}):", "        return False"]

    common: list[str] = []
    uncommon: list[str] = []

    def array(key: str, item_lines: list[str]) -> None:
        # absent or a list; a null value is removed by the general walk
        (uncommon if key in rare else common).extend([
            f"    items = get({key!r}, _ABSENT)",
            "    if items is not _ABSENT:",
            "        if items.__class__ is not list:",
            "            return False",
            *item_lines,
        ])

    for key, id_fields, has_ssrc in elements:
        item_lines = ["        for item in items:",
                      "            if item.__class__ is not dict:",
                      "                return False",
                      "            g = item.get"]
        for field in id_fields:
            item_lines += [f"            v = g({field!r})",
                           "            if v is not None and (v.__class__ is not str or not v):",
                           "                return False"]
        if has_ssrc:
            item_lines += ["            v = g('ssrc')",
                           f"            if v is not None and (v.__class__ is not int or not {int64}):",
                           "                return False"]
        array(key, item_lines)
    for key in object_arrays:
        array(key, ["        for item in items:",
                    "            if item.__class__ is not dict:",
                    "                return False"])
    for key in string_arrays:
        array(key, [])
    for key in objects:
        (uncommon if key in rare else common).extend([
            f"    v = get({key!r})",
            "    if v is not None and v.__class__ is not dict:",
            "        return False"])
    lines += common
    if uncommon:
        lines.append("    if not _RARE.isdisjoint(sample):")
        lines += ["    " + line for line in uncommon]
    lines.append("    return True")
    namespace: dict[str, Any] = {"_timestamp": _timestamp, "_ABSENT": _ABSENT, "_RARE": rare}
    exec(compile("\n".join(lines), f"<{name} normal check>", "exec"), namespace)
    check: Callable[[Sample, int | None], bool] = namespace["check"]
    return check


_client_sample_is_normal = _compile_normal_check(
    "ClientSample", ("clientId", "roomId"), ("callId", "userId", "marker"),
    ("sampleSeq", "timeZoneOffsetInHours"), _CLIENT_ELEMENTS, _CLIENT_OBJECT_ARRAYS,
    _CLIENT_STRING_ARRAYS, _CLIENT_OBJECTS,
    # meta data, sent with a client's first samples only, and the custom events / extension stats
    rare=frozenset(("iceLocalCandidates", "iceRemoteCandidates", *_CLIENT_OBJECT_ARRAYS, *_CLIENT_STRING_ARRAYS,
                    *_CLIENT_OBJECTS)),
)
_sfu_sample_is_normal = _compile_normal_check(
    "SfuSample", ("sfuId",), ("marker",), ("timeZoneOffsetInHours",), _SFU_ELEMENTS, _SFU_OBJECT_ARRAYS,
    rare=frozenset(_SFU_OBJECT_ARRAYS),
)
