"""Frame decoding: ``make_decoder(format, schemaVersion)`` once per websocket session or REST request,
then ``Decoder.decode(bytes)`` per frame.

Wire rules (spec/observer.md §1.1, spec/schemas.md §2):
- ``format``: ``json`` (also when missing) or ``protobuf``, case-insensitive. Any other value is an error
  (the reference silently fell back to JSON, which turned a typo into a stream of decode errors).
- ``schemaVersion``: 2.2.0 (also when missing) or 2.1.0-2.1.9. 2.1.x JSON decodes like 2.2.0 (2.2 only added
  the custom event arrays). 2.1.x protobuf has another field numbering: 2.1.8 and 2.1.9 are decoded with the
  2.1.8 numbering; 2.1.0-2.1.7 are refused, because their numbering differs again (2.1.4 added
  ``PeerConnectionTransport.label``) and decoding them with the 2.1.8 numbering, as the reference did,
  silently mixes up fields.
- ``controls`` and ``turnSamples`` are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import orjson
from google.protobuf.message import Message

from observer.samples.model import REASON_NOT_AN_OBJECT, DecodedSamples, Rejection, Sample, SamplesError
from observer.samples.normalize import FieldProblem, normalize_client_sample, normalize_sfu_sample
from observer.samples.protobuf_decoding import decode_protobuf, samples_class
from observer.samples.version import SchemaVersion, format_version, supported_schema_version

FORMAT_JSON = "json"
FORMAT_PROTOBUF = "protobuf"
FORMATS = (FORMAT_JSON, FORMAT_PROTOBUF)
KIND_CLIENT = "client"
KIND_SFU = "sfu"
# the first 2.1 release whose protobuf numbering is the 2.1.8 one
_FIRST_V21_PROTOBUF_PATCH = 8

_Parse = Callable[[bytes], tuple[list[Any], list[Any]]]


def _decode_json(data: bytes) -> tuple[list[Any], list[Any]]:
    try:
        root = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SamplesError(f"Failed to decode JSON Samples: {exc}") from None
    if type(root) is not dict:
        raise SamplesError("Failed to decode Samples: the JSON document must be an object")
    return _sample_list(root, "clientSamples"), _sample_list(root, "sfuSamples")


def _sample_list(root: dict[str, Any], key: str) -> list[Any]:
    value = root.get(key)
    if value is None:
        return []
    if type(value) is not list:
        raise SamplesError(f"Failed to decode Samples: {key} must be an array")
    return value


def _protobuf_parser(samples_type: type[Message]) -> _Parse:
    def parse(data: bytes) -> tuple[list[Any], list[Any]]:
        return decode_protobuf(samples_type, data)

    return parse


def _validate(
    kind: str,
    raw: list[Any],
    normalize: Callable[[Sample, int | None], None],
    timestamp_override_ms: int | None,
    rejected: list[Rejection],
) -> list[Sample]:
    valid: list[Sample] = []
    for index, sample in enumerate(raw):
        if type(sample) is not dict:
            rejected.append(Rejection(kind, index, f"{kind}Samples[{index}]", REASON_NOT_AN_OBJECT))
            continue
        try:
            normalize(sample, timestamp_override_ms)
        except FieldProblem as problem:
            rejected.append(Rejection(kind, index, problem.field, problem.reason))
            continue
        valid.append(sample)
    return valid


@attrs.frozen
class Decoder:
    format: str
    version: SchemaVersion
    _parse: _Parse = attrs.field(alias="parse", repr=False)

    def decode(self, data: bytes, timestamp_override_ms: int | None = None) -> DecodedSamples:
        """Decode one frame. Raises ``SamplesError`` if the frame as a whole is unreadable; samples that
        fail validation are listed in ``rejected`` and left out. With ``timestamp_override_ms`` every
        sample's ``timestamp`` is replaced (``useServerTimestamp``)."""
        raw_client, raw_sfu = self._parse(data)
        rejected: list[Rejection] = []
        client = _validate(KIND_CLIENT, raw_client, normalize_client_sample, timestamp_override_ms, rejected)
        sfu = _validate(KIND_SFU, raw_sfu, normalize_sfu_sample, timestamp_override_ms, rejected)
        return DecodedSamples(client, sfu, rejected)


def make_decoder(fmt: str | None, schema_version: str | None) -> Decoder:
    """Build the decoder for a session's (or request's) ``format`` and ``schemaVersion`` query values.

    Raises ``SamplesError`` naming the bad value and what is supported.
    """
    name = (fmt or "").strip().lower() or FORMAT_JSON
    if name not in FORMATS:
        raise SamplesError(f"Unsupported format: {fmt}. Supported formats: {', '.join(FORMATS)}")
    version = supported_schema_version(schema_version)
    if name == FORMAT_JSON:
        return Decoder(name, version, parse=_decode_json)
    if version[1] == 1 and version[2] < _FIRST_V21_PROTOBUF_PATCH:
        raise SamplesError(
            f"Protobuf samples of schema version {format_version(version)} are not supported: their field "
            "numbering differs from 2.1.8. Use schemaVersion 2.1.8 or later, or format=json"
        )
    return Decoder(name, version, parse=_protobuf_parser(samples_class(version[1])))
