"""The storages the observer keeps its entities in, one per entity kind (spec/observer.md §3).

Rooms live in a replicated storage: its ``insert_all`` is atomic cluster-wide, which is what makes
one callId per room (and one CALL_STARTED) hold across daemons. So does the lifecycle journal
(``observer.repositories.journal``): the calls, clients, PCs and client tracks started and not ended
yet, which outlive the daemon that owned them. Every other kind lives in a separated storage (each
entry owned by the daemon that created it). Callers use the bulk
operations of the base ``Storage`` API only (one request per kind per pipeline batch), so the code
stays the same whether the storages are local or span several daemons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs
from prometheus_client import CollectorRegistry

from hamok.codec import Codec
from hamok.storages.backups import Backups
from hamok.storages.base import Storage
from hamok.storages.memory import MemoryStorage
from observer.repositories.codecs import KEY_CODEC, entity_codec, ref_codec
from observer.repositories.entities import (
    Call,
    Client,
    InboundTrack,
    OutboundTrack,
    PadRef,
    PeerConnection,
    Room,
    Sfu,
    SfuInboundRtpPad,
    SfuMediaSink,
    SfuMediaStream,
    SfuOutboundRtpPad,
    SfuSctpChannel,
    SfuTransport,
    TrackRef,
)
from observer.repositories.journal import (
    JOURNAL_KEY_CODEC,
    JOURNAL_VALUE_CODEC,
    JournalEntry,
    JournalKey,
)

V = TypeVar("V")

ROOMS = "observertc-rooms"
CALLS = "observertc-calls"
CLIENTS = "observertc-clients"
PEER_CONNECTIONS = "observertc-peer-connections"
INBOUND_TRACKS = "observertc-inbound-tracks"
# the reference's name; it holds audio and video outbound tracks
OUTBOUND_TRACKS = "observertc-outbound-audio-tracks"
SFU_MEDIA_STREAMS = "observertc-sfu-media-streams"
SFU_MEDIA_SINKS = "observertc-sfu-media-sinks"
SFUS = "observertc-sfus"
SFU_TRANSPORTS = "observertc-sfu-transports"
SFU_INBOUND_RTP_PADS = "observertc-sfu-inbound-rtp-pads"
SFU_OUTBOUND_RTP_PADS = "observertc-sfu-outbound-rtp-pads"
SFU_SCTP_CHANNELS = "observertc-sfu-sctp-streams"
# indexes (ours): "<callId>#<ssrc>" -> outbound track, "<sfuStreamId>#<ssrc>" -> internal outbound pad
OUTBOUND_TRACK_SSRCS = "observertc-outbound-track-ssrcs"
SFU_INTERNAL_OUTBOUND_PADS = "observertc-sfu-internal-outbound-pads"
LIFECYCLE_JOURNAL = "observertc-lifecycle"

BACKUPS = "observertc-repository-backups"
_ROOM_KEY_SEPARATOR = "##://:##"


def room_key(service_id: str, room_id: str) -> str:
    """Rooms are per service (BUG 14 fixed for rooms); every other id is global."""
    return f"{service_id}{_ROOM_KEY_SEPARATOR}{room_id}"


def ssrc_key(scope: str, ssrc: int) -> str:
    """Index key of an SSRC inside a call (client tracks) or an SFU stream (internal pads)."""
    return f"{scope}#{ssrc}"


@attrs.frozen
class Kind(Generic[V]):
    storage_id: str
    codec: Codec[V]
    replicated: bool = False
    key_codec: Codec[Any] = KEY_CODEC


KINDS: dict[str, Kind[Any]] = {
    "rooms": Kind(ROOMS, entity_codec(Room), replicated=True),
    "calls": Kind(CALLS, entity_codec(Call)),
    "clients": Kind(CLIENTS, entity_codec(Client)),
    "peer_connections": Kind(PEER_CONNECTIONS, entity_codec(PeerConnection)),
    "inbound_tracks": Kind(INBOUND_TRACKS, entity_codec(InboundTrack)),
    "outbound_tracks": Kind(OUTBOUND_TRACKS, entity_codec(OutboundTrack)),
    "sfu_media_streams": Kind(SFU_MEDIA_STREAMS, entity_codec(SfuMediaStream)),
    "sfu_media_sinks": Kind(SFU_MEDIA_SINKS, entity_codec(SfuMediaSink)),
    "sfus": Kind(SFUS, entity_codec(Sfu)),
    "sfu_transports": Kind(SFU_TRANSPORTS, entity_codec(SfuTransport)),
    "sfu_inbound_rtp_pads": Kind(SFU_INBOUND_RTP_PADS, entity_codec(SfuInboundRtpPad)),
    "sfu_outbound_rtp_pads": Kind(SFU_OUTBOUND_RTP_PADS, entity_codec(SfuOutboundRtpPad)),
    "sfu_sctp_channels": Kind(SFU_SCTP_CHANNELS, entity_codec(SfuSctpChannel)),
    "outbound_track_ssrcs": Kind(OUTBOUND_TRACK_SSRCS, ref_codec(TrackRef)),
    "sfu_internal_outbound_pads": Kind(SFU_INTERNAL_OUTBOUND_PADS, ref_codec(PadRef)),
    "journal": Kind(LIFECYCLE_JOURNAL, JOURNAL_VALUE_CODEC, replicated=True, key_codec=JOURNAL_KEY_CODEC),
}

StorageFactory = Callable[[Kind[Any]], Storage[str, Any]]


@attrs.define
class Repositories:
    rooms: Storage[str, Room]
    calls: Storage[str, Call]
    clients: Storage[str, Client]
    peer_connections: Storage[str, PeerConnection]
    inbound_tracks: Storage[str, InboundTrack]
    outbound_tracks: Storage[str, OutboundTrack]
    sfu_media_streams: Storage[str, SfuMediaStream]
    sfu_media_sinks: Storage[str, SfuMediaSink]
    sfus: Storage[str, Sfu]
    sfu_transports: Storage[str, SfuTransport]
    sfu_inbound_rtp_pads: Storage[str, SfuInboundRtpPad]
    sfu_outbound_rtp_pads: Storage[str, SfuOutboundRtpPad]
    sfu_sctp_channels: Storage[str, SfuSctpChannel]
    outbound_track_ssrcs: Storage[str, TrackRef]
    sfu_internal_outbound_pads: Storage[str, PadRef]
    journal: Storage[JournalKey, JournalEntry]
    backups: Backups | None = None

    @classmethod
    def build(cls, factory: StorageFactory) -> Repositories:
        storages: dict[str, Any] = {name: factory(kind) for name, kind in KINDS.items()}
        return cls(**storages)

    @classmethod
    def in_memory(cls) -> Repositories:
        """Local storages only: for a single process without a grid, and for tests."""
        return cls.build(lambda kind: MemoryStorage(kind.storage_id))

    @classmethod
    def on_grid(cls, grid: Any, *, use_backups: bool = False, separated: bool = True,
                registry: CollectorRegistry | None = None) -> Repositories:
        """The storages on a hamok grid (same storage ids on every daemon). With ``use_backups``
        the separated storages mirror their entries on other daemons (restored when a daemon is
        lost). ``separated=False`` puts every kind in a replicated storage (small clusters, tests)."""
        backups = Backups(grid, BACKUPS, registry=registry) if use_backups and separated else None

        def factory(kind: Kind[Any]) -> Storage[str, Any]:
            if kind.replicated or not separated:
                return grid.replicated_storage(kind.storage_id, key_codec=kind.key_codec, value_codec=kind.codec)
            return grid.separated_storage(kind.storage_id, key_codec=kind.key_codec, value_codec=kind.codec,
                                          backups=backups, registry=registry)

        repositories = cls.build(factory)
        repositories.backups = backups
        return repositories

    def items(self) -> Iterator[tuple[str, Storage[str, Any]]]:
        for name in KINDS:
            yield name, getattr(self, name)

    async def close(self) -> None:
        for _, storage in self.items():
            await storage.close()
        if self.backups is not None:
            await self.backups.close()
