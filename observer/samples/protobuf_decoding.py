"""Protobuf (proto2) Samples -> the same dict shape as the JSON wire format.

``samples_pb2`` is generated from ``observer/schemas/SamplesProtobuf.proto`` (schema 2.2.0)::

    tmp=$(mktemp -d) && mkdir -p $tmp/observer/samples
    cp observer/schemas/SamplesProtobuf.proto $tmp/observer/samples/samples.proto
    python -m grpc_tools.protoc -I$tmp --python_out=. --pyi_out=. observer/samples/samples.proto

Only fields present on the wire become dict keys (an absent optional string is absent, not ``""``), so a
protobuf frame and its JSON twin decode to the same dict. proto2 ``required`` fields are not enforced at
parse time: like JSON, missing ids are caught per sample by ``normalize`` and drop only that sample.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from observer.samples import samples_pb2
from observer.samples.model import Sample, SamplesError

_SCALAR, _SCALARS, _MESSAGE, _MESSAGES, _LEAF, _LEAVES = range(6)
_CUSTOM_EVENT_FIELDS = frozenset({"customCallEvents", "customObserverEvents", "customSfuEvents"})
_CUSTOM_EVENT_TYPES = frozenset({"CustomCallEvent", "CustomObserverEvent", "CustomSfuEvent"})

# Per field descriptor: (dict key, conversion kind). Looking a descriptor up in a dict is cheaper than
# reading ``.name`` from a upb descriptor, and ListFields() dominates the conversion cost anyway.
_field_plans: dict[Any, tuple[str, int]] = {}
_leaf_names: dict[Any, str] = {}


def _is_leaf(message_type: Any) -> bool:
    return all(field.message_type is None and not field.is_repeated for field in message_type.fields)


def _field_plan(field: Any) -> tuple[str, int]:
    message_type = field.message_type
    if message_type is None:
        kind = _SCALARS if field.is_repeated else _SCALAR
    elif _is_leaf(message_type):
        kind = _LEAVES if field.is_repeated else _LEAF
    else:
        kind = _MESSAGES if field.is_repeated else _MESSAGE
    plan = _field_plans[field] = (field.name, kind)
    return plan


def _text(raw: bytes) -> str:
    # upb hands out a proto2 string holding invalid UTF-8 as bytes; Java (the reference) read such a string
    # with replacement characters, and bytes would break every JSON sink downstream.
    return raw.decode(errors="replace")


def _leaf_to_dict(message: Message) -> Sample:
    """A message with only singular scalar fields (every track / pad / transport / codec ...)."""
    out: Sample = {}
    for field, value in message.ListFields():
        name = _leaf_names.get(field)
        if name is None:
            name = _leaf_names[field] = field.name
        if value.__class__ is bytes:
            value = _text(value)
        out[name] = value
    return out


def message_to_dict(message: Message) -> Sample:
    out: Sample = {}
    for field, value in message.ListFields():
        name, kind = _field_plans.get(field) or _field_plan(field)
        if kind == _LEAVES:
            out[name] = [_leaf_to_dict(item) for item in value]
        elif kind == _SCALAR:
            out[name] = _text(value) if value.__class__ is bytes else value
        elif kind == _SCALARS:
            out[name] = [_text(item) if item.__class__ is bytes else item for item in value]
        elif kind == _LEAF:
            out[name] = _leaf_to_dict(value)
        elif kind == _MESSAGES:
            out[name] = [message_to_dict(item) for item in value]
        else:
            out[name] = message_to_dict(value)
    return out


def _drop_custom_events(message: descriptor_pb2.DescriptorProto) -> None:
    kept = [field for field in message.field if field.name not in _CUSTOM_EVENT_FIELDS]
    del message.field[:]
    # The schema generator numbers fields 1..n in declaration order (repeated, then required, then optional,
    # each alphabetical), so removing the 2.2 additions and renumbering yields exactly the 2.1.8 numbering
    # (checked against the 2.1.8 descriptor embedded in the reference observer).
    for number, field in enumerate(kept, start=1):
        field.number = number
        message.field.add().CopyFrom(field)
    nested = [child for child in message.nested_type if child.name not in _CUSTOM_EVENT_TYPES]
    del message.nested_type[:]
    for child in nested:
        _drop_custom_events(child)
        message.nested_type.add().CopyFrom(child)


@functools.cache
def _samples_v2_1_8_class() -> type[Message]:
    file_proto = descriptor_pb2.FileDescriptorProto()
    samples_pb2.DESCRIPTOR.CopyToProto(file_proto)
    file_proto.name = "observer/samples/samples_v2_1_8.proto"
    for message in file_proto.message_type:
        _drop_custom_events(message)
    pool = descriptor_pool.DescriptorPool()  # private pool: same package and message names as 2.2.0
    pool.Add(file_proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.observertc.schemas.protobuf.Samples")
    )


def samples_class(minor: int) -> type[Message]:
    """The generated ``Samples`` class for schema 2.2 (``minor=2``) or 2.1.8 (``minor=1``)."""
    return samples_pb2.Samples if minor == 2 else _samples_v2_1_8_class()


def decode_protobuf(samples_type: type[Message], data: bytes) -> tuple[list[Any], list[Any]]:
    message = samples_type()
    try:
        message.ParseFromString(data)
        return (
            [message_to_dict(sample) for sample in message.clientSamples],
            [message_to_dict(sample) for sample in message.sfuSamples],
        )
    except (DecodeError, ValueError) as exc:
        raise SamplesError(f"Failed to decode protobuf Samples: {exc}") from None
