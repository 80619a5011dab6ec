"""What travels inside one hamok websocket connection.

Every websocket message is binary and starts with a one-byte kind. A connection opens
with a handshake (HELLO both ways, AUTH both ways when a secret is configured, then ACCEPT
from the peer with the smaller id, which arbitrates which connection of the pair is kept).
After that only FRAMES and CHUNK_* messages are valid:

- FRAMES packs one or more whole frames, each behind a 4-byte big-endian length. The
  writer puts every frame already queued into one message (up to the size limit), so a
  burst of small raft messages costs one websocket message instead of one each.
- A frame too large for one message goes as CHUNK_FIRST (8-byte total length + data)
  followed by CHUNK_NEXT messages. One connection has one writer, so the chunks of a
  frame are never interleaved with other frames and need no frame id.

Anything else closes that one connection with a 44xx code and a reason.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import msgpack

PROTOCOL_VERSION = 1
HEADER_ROOM = 16
"""Bytes a message may carry on top of its frame data (kind byte + chunk header)."""
MIN_CHUNK_BYTES = 1024
NONCE_BYTES = 32
MAX_ID_CHARS = 256

_LEN = struct.Struct(">I")
_TOTAL = struct.Struct(">Q")


class Kind(enum.IntEnum):
    HELLO = 1
    AUTH = 2
    ACCEPT = 3
    FRAMES = 16
    CHUNK_FIRST = 17
    CHUNK_NEXT = 18


class CloseCode(enum.IntEnum):
    """Application close codes (RFC 6455 leaves 4000-4999 to applications)."""

    REPLACED = 4000
    MALFORMED = 4400
    AUTH_FAILED = 4401
    ID_REFUSED = 4403
    HANDSHAKE_TIMEOUT = 4408
    DUPLICATE = 4409
    TOO_LARGE = 4413


class ProtocolViolation(Exception):
    """The peer broke the protocol; the connection is closed with ``code`` and ``reason``.

    ``metric`` is the reason label under which the closed connection is counted.
    """

    def __init__(self, code: CloseCode, reason: str, metric: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.metric = metric


def close_reason(text: str) -> str:
    """A close reason must fit in 123 UTF-8 bytes (RFC 6455 §5.5)."""
    raw = text.encode("utf-8")
    if len(raw) <= 123:
        return text
    return raw[:120].decode("utf-8", errors="ignore") + "..."


@attrs.frozen
class Hello:
    peer_id: str
    incarnation: str
    """Random per endpoint start: tells a restarted peer from a second connection of the same one."""
    started_ms: int
    """Wall clock of the endpoint start: when two instances claim one id, the later one wins."""
    nonce: bytes
    auth: bool
    """The sender has a secret configured and will run the challenge."""
    chunk_bytes: int
    """Largest frame data the sender accepts in one websocket message."""
    max_frame_bytes: int
    """Largest whole frame the sender accepts."""
    address: str
    """host:port the sender serves on (for logs)."""


def encode_hello(hello: Hello) -> bytes:
    body = {
        "v": PROTOCOL_VERSION,
        "id": hello.peer_id,
        "inc": hello.incarnation,
        "t": hello.started_ms,
        "nonce": hello.nonce,
        "auth": hello.auth,
        "chunk": hello.chunk_bytes,
        "max_frame": hello.max_frame_bytes,
        "addr": hello.address,
    }
    return bytes([Kind.HELLO]) + msgpack.packb(body, use_bin_type=True)


def _malformed(reason: str) -> ProtocolViolation:
    return ProtocolViolation(CloseCode.MALFORMED, close_reason(reason), "malformed")


def _payload(message: Any, kind: Kind) -> bytes:
    if isinstance(message, str):
        raise _malformed(f"text message where binary {kind.name} was expected")
    if not message or message[0] != kind:
        got = Kind(message[0]).name if message and message[0] in Kind._value2member_map_ else "unknown"
        raise _malformed(f"expected {kind.name}, got {got} message")
    return bytes(message[1:])


def decode_hello(message: Any) -> Hello:
    try:
        body = msgpack.unpackb(_payload(message, Kind.HELLO), raw=False)
    except ProtocolViolation:
        raise
    except Exception as exc:
        raise _malformed(f"HELLO is not msgpack ({type(exc).__name__})") from exc
    if not isinstance(body, dict):
        raise _malformed("HELLO is not a map")
    if body.get("v") != PROTOCOL_VERSION:
        raise _malformed(
            f"unsupported protocol version {body.get('v')!r} (this side speaks {PROTOCOL_VERSION})"
        )
    peer_id, incarnation, nonce = body.get("id"), body.get("inc"), body.get("nonce")
    if not isinstance(peer_id, str) or not peer_id or len(peer_id) > MAX_ID_CHARS:
        raise _malformed(f"HELLO field 'id' must be a string of 1..{MAX_ID_CHARS} chars")
    if not isinstance(incarnation, str) or not incarnation or len(incarnation) > MAX_ID_CHARS:
        raise _malformed("HELLO field 'inc' must be a non-empty string")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise _malformed(f"HELLO field 'nonce' must be {NONCE_BYTES} bytes")
    started = body.get("t")
    if not isinstance(started, int) or isinstance(started, bool) or started < 0:
        raise _malformed("HELLO field 't' must be a non-negative integer")
    for field in ("chunk", "max_frame"):
        value = body.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < MIN_CHUNK_BYTES:
            raise _malformed(f"HELLO field {field!r} must be an integer >= {MIN_CHUNK_BYTES}")
    if not isinstance(body.get("auth"), bool):
        raise _malformed("HELLO field 'auth' must be a boolean")
    address = body.get("addr")
    return Hello(
        peer_id=peer_id,
        incarnation=incarnation,
        started_ms=started,
        nonce=nonce,
        auth=body["auth"],
        chunk_bytes=body["chunk"],
        max_frame_bytes=body["max_frame"],
        address=address if isinstance(address, str) else "?",
    )


def encode_auth(proof: bytes) -> bytes:
    return bytes([Kind.AUTH]) + proof


def decode_auth(message: Any) -> bytes:
    return _payload(message, Kind.AUTH)


ACCEPT = bytes([Kind.ACCEPT])


def expect_accept(message: Any) -> None:
    if _payload(message, Kind.ACCEPT):
        raise _malformed("ACCEPT carries no payload")


def encode_frames(frames: Sequence[bytes]) -> bytes:
    parts: list[bytes] = [bytes([Kind.FRAMES])]
    for frame in frames:
        parts.append(_LEN.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def frames_message_size(frame_bytes: int) -> int:
    """How much of a FRAMES message one frame of ``frame_bytes`` takes."""
    return _LEN.size + frame_bytes


def encode_chunks(frame: bytes, chunk_bytes: int) -> Iterator[bytes]:
    view = memoryview(frame)
    yield b"".join((bytes([Kind.CHUNK_FIRST]), _TOTAL.pack(len(frame)), view[:chunk_bytes]))
    for start in range(chunk_bytes, len(frame), chunk_bytes):
        yield b"".join((bytes([Kind.CHUNK_NEXT]), view[start : start + chunk_bytes]))


class Reassembler:
    """Turns the post-handshake messages of one connection back into whole frames.

    Holds at most one partial frame, never more than ``max_frame_bytes``.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max_frame = max_frame_bytes
        self._partial: bytearray | None = None
        self._expected = 0

    def feed(self, message: Any) -> list[bytes]:
        if isinstance(message, str):
            raise _malformed("text message after the handshake")
        if not message:
            raise _malformed("empty message")
        kind = message[0]
        if kind == Kind.FRAMES:
            if self._partial is not None:
                raise _malformed("FRAMES while a chunked frame is incomplete")
            return self._split(message)
        if kind == Kind.CHUNK_FIRST:
            return self._first(message)
        if kind == Kind.CHUNK_NEXT:
            return self._next(message)
        name = Kind(kind).name if kind in Kind._value2member_map_ else f"unknown kind {kind}"
        raise _malformed(f"unexpected {name} message after the handshake")

    def _split(self, message: bytes) -> list[bytes]:
        view = memoryview(message)
        end = len(view)
        pos = 1
        frames: list[bytes] = []
        while pos < end:
            if pos + _LEN.size > end:
                raise _malformed("FRAMES ends inside a length prefix")
            (length,) = _LEN.unpack_from(view, pos)
            pos += _LEN.size
            if pos + length > end:
                raise _malformed(f"FRAMES entry of {length} bytes overruns the message")
            frames.append(bytes(view[pos : pos + length]))
            pos += length
        if not frames:
            raise _malformed("FRAMES without a frame")
        return frames

    def _first(self, message: bytes) -> list[bytes]:
        if self._partial is not None:
            raise _malformed("CHUNK_FIRST while a chunked frame is incomplete")
        if len(message) < 1 + _TOTAL.size:
            raise _malformed("CHUNK_FIRST shorter than its header")
        (total,) = _TOTAL.unpack_from(message, 1)
        if total > self._max_frame:
            raise ProtocolViolation(
                CloseCode.TOO_LARGE,
                close_reason(f"frame of {total} bytes exceeds the limit of {self._max_frame}"),
                "too_large",
            )
        data = memoryview(message)[1 + _TOTAL.size :]
        if len(data) > total:
            raise _malformed(f"CHUNK_FIRST carries {len(data)} bytes of a {total}-byte frame")
        if len(data) == total:
            return [bytes(data)]
        self._partial = bytearray(data)
        self._expected = total
        return []

    def _next(self, message: bytes) -> list[bytes]:
        partial = self._partial
        if partial is None:
            raise _malformed("CHUNK_NEXT without CHUNK_FIRST")
        data = memoryview(message)[1:]
        if not data:
            raise _malformed("empty CHUNK_NEXT")
        if len(partial) + len(data) > self._expected:
            raise _malformed(f"chunks overrun the announced frame size of {self._expected} bytes")
        partial += data
        if len(partial) < self._expected:
            return []
        self._partial = None
        return [bytes(partial)]
