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


def normalize_sfu_sample(sample: Sample, timestamp_override_ms: int | None = None) -> None:
    """Normalize an SfuSample in place; raises ``FieldProblem`` if it must be dropped."""
    _required_id(sample, "sfuId")
    _optional_id(sample, "marker")
    _timestamp(sample, timestamp_override_ms)
    _optional_int(sample, "timeZoneOffsetInHours", _INT32)
    for spec in _SFU_ELEMENTS:
        _elements(sample, spec)
    for key in _SFU_OBJECT_ARRAYS:
        _object_array(sample, key)
