"""The lifecycle journal: every call, client, peer connection and client track that was started and
has not ended yet, in a replicated storage (docs/cluster.md, "Without backups").

The other entities live in separated storages, owned by the daemon that created them; when a daemon
dies without backups they are gone from the grid. The journal keeps, on every daemon, what is needed
to carry on with them: a daemon that sees the entity again re-creates it with the same ids and no
opening event, and the leader's expirer ends the ones that never come back (closing event once).

An entry is keyed by its *incarnation*: the entity's id together with the parents that decide
whether it is still the same entity (a client in another call is another incarnation, exactly where
the pipeline emits CLIENT_LEFT and CLIENT_JOINED). Keys are tuples (kind, *ids), stored as msgpack
arrays, so no separator can be confused with an id. The value is the entity as it was created, in a
``JournalEntry`` that decodes it only when it is used: every daemon applies every journal write,
and almost every entry is deleted again without being read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import msgpack

from hamok.codec import Codec
from observer.repositories.codecs import entity_codec
from observer.repositories.entities import Call, Client, InboundTrack, OutboundTrack, PeerConnection

JournalKey: TypeAlias = tuple[str, ...]
JournalEntity: TypeAlias = Call | Client | PeerConnection | InboundTrack | OutboundTrack

CALL = "call"
CLIENT = "client"
PEER_CONNECTION = "pc"
INBOUND_TRACK = "in"
OUTBOUND_TRACK = "out"

# journal kind -> the repositories attribute holding the live entities of that kind
STORAGE_OF: dict[str, str] = {
    CALL: "calls",
    CLIENT: "clients",
    PEER_CONNECTION: "peer_connections",
    INBOUND_TRACK: "inbound_tracks",
    OUTBOUND_TRACK: "outbound_tracks",
}


def call_key(call_id: str) -> JournalKey:
    return (CALL, call_id)


def client_key(call_id: str, client_id: str) -> JournalKey:
    return (CLIENT, call_id, client_id)


def peer_connection_key(call_id: str, client_id: str, peer_connection_id: str) -> JournalKey:
    return (PEER_CONNECTION, call_id, client_id, peer_connection_id)


def track_key(kind: str, call_id: str, peer_connection_id: str, track_id: str) -> JournalKey:
    """``kind`` is INBOUND_TRACK or OUTBOUND_TRACK."""
    return (kind, call_id, peer_connection_id, track_id)


def journal_key(entity: JournalEntity) -> JournalKey:
    """The incarnation key of an entity (of a live one, to compare with the journal's)."""
    if isinstance(entity, Call):
        return (CALL, entity.call_id)
    if isinstance(entity, Client):
        return (CLIENT, entity.call_id, entity.client_id)
    if isinstance(entity, PeerConnection):
        return (PEER_CONNECTION, entity.call_id, entity.client_id, entity.peer_connection_id)
    kind = INBOUND_TRACK if isinstance(entity, InboundTrack) else OUTBOUND_TRACK
    return (kind, entity.call_id, entity.peer_connection_id, entity.track_id)


def stored_key(key: JournalKey) -> str:
    """The key of the incarnation's entity in its own storage: its id, the key's last element."""
    return key[-1]


def is_incarnation(key: JournalKey, entity: Any) -> bool:
    """Whether the entity stored under ``stored_key(key)`` is this incarnation (has its parents).
    Allocates nothing: the expirer asks it for every journal entry on every pass."""
    if entity.call_id != key[1]:
        return False
    kind = key[0]
    if kind == CALL or kind == CLIENT:
        return True
    if kind == PEER_CONNECTION:
        return bool(entity.client_id == key[2])
    return bool(entity.peer_connection_id == key[2])


def grid_key(entity: JournalEntity) -> str:
    """The key of the entity in its own storage."""
    if isinstance(entity, Call):
        return entity.call_id
    if isinstance(entity, Client):
        return entity.client_id
    if isinstance(entity, PeerConnection):
        return entity.peer_connection_id
    return entity.track_id


def created_at(entity: JournalEntity) -> int:
    """When the incarnation was created (kept by a re-created entity: it tells a new incarnation with
    the same key from the same one coming back)."""
    if isinstance(entity, Call):
        return entity.started
    if isinstance(entity, Client):
        return entity.joined
    if isinstance(entity, PeerConnection):
        return entity.opened
    return entity.added


# -------------------------------------------------------------------------------------------- codecs
def _encode_key(key: JournalKey) -> bytes:
    return msgpack.packb(list(key), use_bin_type=True)


def _decode_key(data: bytes) -> JournalKey:
    return tuple(msgpack.unpackb(data, raw=False))


JOURNAL_KEY_CODEC: Codec[JournalKey] = Codec(_encode_key, _decode_key)

_TAGS: dict[type, int] = {Call: 1, Client: 2, PeerConnection: 3, InboundTrack: 4, OutboundTrack: 5}
_CODECS: dict[int, Codec[Any]] = {tag: entity_codec(cls) for cls, tag in _TAGS.items()}
_ENCODERS: dict[type, tuple[bytes, Callable[[Any], bytes]]] = {
    cls: (bytes((tag,)), _CODECS[tag].encode) for cls, tag in _TAGS.items()
}


def _decode_value(data: bytes) -> JournalEntity:
    codec = _CODECS.get(data[0]) if data else None
    if codec is None:
        raise ValueError(f"unknown lifecycle journal entry tag {data[:1]!r}")
    return codec.decode(data[1:])


class JournalEntry:
    """A journal value: one byte naming the entity class, then the entity's own msgpack array;
    encoded or decoded once, when first needed."""

    __slots__ = ("_data", "_entity")

    def __init__(self, entity: JournalEntity | None = None, *, data: bytes | None = None) -> None:
        if (entity is None) == (data is None):
            raise ValueError("a journal entry is made of an entity or of its encoding")
        self._entity = entity
        self._data = data

    @property
    def entity(self) -> JournalEntity:
        if self._entity is None:
            assert self._data is not None
            self._entity = _decode_value(self._data)
        return self._entity

    def encode(self) -> bytes:
        if self._data is None:
            assert self._entity is not None
            tag, encode = _ENCODERS[self._entity.__class__]
            self._data = tag + encode(self._entity)
        return self._data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JournalEntry) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JournalEntry({self.entity!r})"


def _decode_entry(data: bytes) -> JournalEntry:
    if not data or data[0] not in _CODECS:
        raise ValueError(f"unknown lifecycle journal entry tag {data[:1]!r}")
    return JournalEntry(data=bytes(data))


JOURNAL_VALUE_CODEC: Codec[JournalEntry] = Codec(JournalEntry.encode, _decode_entry)
