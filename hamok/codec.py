"""Key/value codecs: how storage keys and values become bytes on the wire and in the raft log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import msgpack

T = TypeVar("T")


@attrs.frozen
class Codec(Generic[T]):
    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


MSGPACK: Codec[Any] = Codec(_packb, _unpackb)
"""Default codec: any msgpack-able value (str, int, bytes, lists, dicts)."""

STR: Codec[str] = Codec(lambda s: s.encode("utf-8"), lambda b: bytes(b).decode("utf-8"))
BYTES: Codec[bytes] = Codec(lambda b: b, lambda b: bytes(b))
