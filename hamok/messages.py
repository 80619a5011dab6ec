"""The wire envelope hamok peers exchange, and its msgpack codec.

One envelope type carries every grid, raft and storage message. Fields that a message
type does not use stay at their defaults and are left out of the encoding, so a
heartbeat costs a few bytes and a storage response carries only keys and values.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import msgpack

from .errors import DecodeError


class MessageType(enum.IntEnum):
    # grid level
    HELLO = 1                 # membership / cluster info exchanged when a peer comes up
    RAFT = 2                  # a pysyncobj message (payload = its dict)
    JOIN_REQUEST = 3          # ask the leader to add the sender to the raft membership (no reply: the
                              # joiner sees the leader's append-entries)
    # storage requests / responses
    GET_ENTRIES_REQUEST = 20
    GET_ENTRIES_RESPONSE = 21
    GET_KEYS_REQUEST = 22
    GET_KEYS_RESPONSE = 23
    GET_SIZE_REQUEST = 24
    GET_SIZE_RESPONSE = 25
    UPDATE_ENTRIES_REQUEST = 26
    UPDATE_ENTRIES_RESPONSE = 27
    INSERT_ENTRIES_REQUEST = 28
    INSERT_ENTRIES_RESPONSE = 29
    DELETE_ENTRIES_REQUEST = 30
    DELETE_ENTRIES_RESPONSE = 31
    REMOVE_ENTRIES_REQUEST = 32
    REMOVE_ENTRIES_RESPONSE = 33
    EVICT_ENTRIES_REQUEST = 34
    EVICT_ENTRIES_RESPONSE = 35
    CLEAR_ENTRIES_REQUEST = 36
    CLEAR_ENTRIES_RESPONSE = 37
    # storage notifications (fire and forget)
    UPDATE_ENTRIES_NOTIFICATION = 50
    INSERT_ENTRIES_NOTIFICATION = 51
    DELETE_ENTRIES_NOTIFICATION = 52
    EVICT_ENTRIES_NOTIFICATION = 53
    REMOVE_ENTRIES_NOTIFICATION = 54
    CLEAR_ENTRIES_NOTIFICATION = 55
    # generic response used when a peer lacks the storage a request named
    NO_STORAGE_RESPONSE = 90


_RESPONSE_OF: dict[MessageType, MessageType] = {
    MessageType.GET_ENTRIES_REQUEST: MessageType.GET_ENTRIES_RESPONSE,
    MessageType.GET_KEYS_REQUEST: MessageType.GET_KEYS_RESPONSE,
    MessageType.GET_SIZE_REQUEST: MessageType.GET_SIZE_RESPONSE,
    MessageType.UPDATE_ENTRIES_REQUEST: MessageType.UPDATE_ENTRIES_RESPONSE,
    MessageType.INSERT_ENTRIES_REQUEST: MessageType.INSERT_ENTRIES_RESPONSE,
    MessageType.DELETE_ENTRIES_REQUEST: MessageType.DELETE_ENTRIES_RESPONSE,
    MessageType.REMOVE_ENTRIES_REQUEST: MessageType.REMOVE_ENTRIES_RESPONSE,
    MessageType.EVICT_ENTRIES_REQUEST: MessageType.EVICT_ENTRIES_RESPONSE,
    MessageType.CLEAR_ENTRIES_REQUEST: MessageType.CLEAR_ENTRIES_RESPONSE,
}
_RESPONSES = frozenset(_RESPONSE_OF.values()) | {MessageType.NO_STORAGE_RESPONSE}


def response_type_of(request: MessageType) -> MessageType:
    try:
        return _RESPONSE_OF[request]
    except KeyError:
        raise ValueError(f"{request.name} is not a request type") from None


def is_response(message_type: MessageType) -> bool:
    return message_type in _RESPONSES


@attrs.define(slots=True)
class Message:
    """One envelope. ``destination`` None means broadcast to every remote peer."""

    type: MessageType
    source: str = ""
    destination: str | None = None
    storage_id: str | None = None
    request_id: str | None = None
    keys: list[bytes] = attrs.field(factory=list)
    values: list[bytes] = attrs.field(factory=list)
    # chunking of large responses: sequence number and last flag
    sequence: int = 0
    last: bool = True
    # small typed extras (size, success, raft dict, cluster info ...)
    payload: Any = None

    def response(self, message_type: MessageType | None = None, **kwargs: Any) -> Message:
        """A response addressed back to this message's source, echoing storage id and request id."""
        return Message(
            type=message_type if message_type is not None else response_type_of(self.type),
            destination=self.source,
            storage_id=self.storage_id,
            request_id=self.request_id,
            **kwargs,
        )


# Compact positional layout: [type, source, destination, storage_id, request_id, keys, values,
# sequence, last, payload]. Positional arrays keep the per-message overhead small on the hot raft path.
def encode(message: Message) -> bytes:
    return msgpack.packb(
        (
            int(message.type),
            message.source,
            message.destination,
            message.storage_id,
            message.request_id,
            message.keys,
            message.values,
            message.sequence,
            message.last,
            message.payload,
        ),
        use_bin_type=True,
    )


def decode(data: bytes) -> Message:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        (mtype, source, destination, storage_id, request_id, keys, values, sequence, last, payload) = raw
        return Message(
            type=MessageType(mtype),
            source=source,
            destination=destination,
            storage_id=storage_id,
            request_id=request_id,
            keys=keys,
            values=values,
            sequence=sequence,
            last=last,
            payload=payload,
        )
    except Exception as exc:  # any malformed frame is one DecodeError for the caller
        raise DecodeError(f"invalid hamok message: {exc}") from exc
