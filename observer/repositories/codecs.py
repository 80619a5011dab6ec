"""msgpack value codecs for the entities: an entity is stored as the array of its field values.

Arrays instead of maps keep values small (no field names on the wire or in backups); the price
is that fields must only ever be appended to an entity class, with a default.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

import attrs
import msgpack

from hamok.codec import STR, Codec
from observer.repositories.entities import PadRef, TrackRef

T = TypeVar("T")

KEY_CODEC: Codec[str] = STR

_REFS = (TrackRef, PadRef)


def entity_codec(cls: type[T]) -> Codec[T]:
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    getter = attrgetter(*(f.name for f in fields))
    # fields holding a nested ref (encoded as its own array, decoded by the field's converter)
    nested = [i for i, f in enumerate(fields) if f.converter is not None and _is_ref_field(f)]
    packb: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack

    def encode(entity: T) -> bytes:
        values = list(getter(entity))
        for i in nested:
            ref = values[i]
            if ref is not None:
                values[i] = ref.to_wire()
        return packb(values)

    def decode(data: bytes) -> T:
        return cls(*msgpack.unpackb(data, raw=False, use_list=True))

    return Codec(encode, decode)


def _is_ref_field(field: attrs.Attribute[Any]) -> bool:
    annotation = str(field.type)
    return any(ref.__name__ in annotation for ref in _REFS)


def ref_codec(cls: type[TrackRef] | type[PadRef]) -> Codec[Any]:
    """Codec for index values that are a bare ref."""
    packb: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack

    def encode(ref: Any) -> bytes:
        return packb(ref.to_wire())

    def decode(data: bytes) -> Any:
        return cls(*msgpack.unpackb(data, raw=False))

    return Codec(encode, decode)
