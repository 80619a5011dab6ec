"""Entities, their msgpack codecs and the repositories on hamok storages (spec/observer.md §3)."""

from __future__ import annotations

import asyncio

import attrs
import msgpack
import pytest

from hamok import MemoryStorage, ReplicatedStorage
from observer.repositories import (
    KINDS,
    Call,
    Client,
    InboundTrack,
    JournalEntry,
    OutboundTrack,
    PadRef,
    PeerConnection,
    Repositories,
    Room,
    Sfu,
    SfuInboundRtpPad,
    SfuMediaSink,
    SfuMediaStream,
    SfuOutboundRtpPad,
    SfuSctpChannel,
    SfuTransport,
    TrackRef,
    call_key,
    client_key,
    created_at,
    grid_key,
    journal_key,
    peer_connection_key,
    room_key,
    ssrc_key,
    track_key,
)
from tests.hamok.cluster_util import close_all, formed, start_cluster, wait_until
from tests.observer.test_pipeline_support import separated_storage_available, single_node_grid

REF = TrackRef("call", "client", None, "pc", "track")
PAD = PadRef("sfu", "transport", None, "pad")

SAMPLES = {
    "rooms": Room("svc", "room", "call", ("old-1", "old-2")),
    "calls": Call("svc", "room", "call", 1, None, 2, 3),
    "clients": Client("svc", "room", "call", "client", 1, 2, 3, "mu", "user", "marker", "+02:00"),
    "peer_connections": PeerConnection("svc", "room", "call", "client", "pc", 1, 2, 3, "mu", None, None, "label"),
    "inbound_tracks": InboundTrack("svc", "room", "call", "client", "pc", "track", "AUDIO", 1, 2, 3, "mu", None,
                                   None, "stream", "sink", (1, 2**32 - 1), REF),
    "outbound_tracks": OutboundTrack("svc", "room", "call", "client", "pc", "track", "VIDEO", 1, 2, 3, "mu", None,
                                     None, None, (7,)),
    "sfu_media_streams": SfuMediaStream("svc", "stream", "AUDIO", REF),
    "sfu_media_sinks": SfuMediaSink("svc", "stream", "sink", "VIDEO", REF),
    "sfus": Sfu("svc", "sfu", 1, 2, 3, "mu", None, None),
    "sfu_transports": SfuTransport("svc", "sfu", "transport", True, 1, 2, 3, "mu", None),
    "sfu_inbound_rtp_pads": SfuInboundRtpPad("svc", "sfu", "transport", "stream", "pad", None, True, 1, 2, 3, "mu",
                                             None, REF, PAD),
    "sfu_outbound_rtp_pads": SfuOutboundRtpPad("svc", "sfu", "transport", "stream", "sink", "pad", 5, False, 1, 2,
                                               3, "mu", None, None),
    "sfu_sctp_channels": SfuSctpChannel("svc", "sfu", "transport", "sctp", "channel", 1, 2, 3, "mu", None),
    "outbound_track_ssrcs": REF,
    "sfu_internal_outbound_pads": PAD,
    "journal": JournalEntry(Client("svc", "room", "call", "client", 1, 2, 3, None, None, None, None)),
}


def test_every_kind_has_a_sample_and_a_distinct_observertc_storage_id() -> None:
    assert set(SAMPLES) == set(KINDS)
    ids = [kind.storage_id for kind in KINDS.values()]
    assert len(set(ids)) == len(ids) and all(i.startswith("observertc-") for i in ids)
    assert [name for name, kind in KINDS.items() if kind.replicated] == ["rooms", "journal"]
    assert KINDS["journal"].storage_id == "observertc-lifecycle"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_codec_round_trip(name: str) -> None:
    codec = KINDS[name].codec
    value = SAMPLES[name]
    data = codec.encode(value)
    assert codec.decode(data) == value
    if name == "journal":
        data = data[1:]  # one byte names the entity class
    assert isinstance(msgpack.unpackb(data), list)  # compact: field values only, no names


@pytest.mark.parametrize("name", ["calls", "clients", "peer_connections", "inbound_tracks", "outbound_tracks"])
def test_lifecycle_journal_holds_every_call_side_kind_under_its_incarnation_key(name: str) -> None:
    entity = SAMPLES[name]
    kind = KINDS["journal"]
    assert kind.codec.decode(kind.codec.encode(JournalEntry(entity))).entity == entity
    key = journal_key(entity)
    assert kind.key_codec.decode(kind.key_codec.encode(key)) == key
    assert key[0] == {"calls": "call", "clients": "client", "peer_connections": "pc", "inbound_tracks": "in",
                      "outbound_tracks": "out"}[name]
    assert "call" in key  # every incarnation key names the call: another call is another incarnation
    assert grid_key(entity) in {"call", "client", "pc", "track"}
    assert created_at(entity) == 1


def test_lifecycle_journal_keys_cannot_be_confused_by_separators_in_ids() -> None:
    codec = KINDS["journal"].key_codec
    a, b = client_key("a|b", "c"), client_key("a", "b|c")
    assert a != b and codec.encode(a) != codec.encode(b)
    assert track_key("in", "c", "p", "t") != track_key("out", "c", "p", "t")
    assert peer_connection_key("c", "x", "p") == journal_key(
        PeerConnection("s", "r", "c", "x", "p", 1, 1, 1, None, None, None, None))
    assert call_key("c") == journal_key(Call("s", "r", "c", 1, None, None, 1))
    with pytest.raises(ValueError, match="tag"):
        KINDS["journal"].codec.decode(b"\x09" + KINDS["calls"].codec.encode(SAMPLES["calls"]))
    with pytest.raises(ValueError, match="entity or"):
        JournalEntry()


def test_lifecycle_journal_entries_decode_only_when_read() -> None:
    codec = KINDS["journal"].codec
    entry = codec.decode(codec.encode(JournalEntry(SAMPLES["outbound_tracks"])))
    assert entry._entity is None  # applied on every daemon, read almost never
    assert entry.entity == SAMPLES["outbound_tracks"] and entry._entity is not None


def test_entities_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SAMPLES["calls"].call_id = "other"  # type: ignore[misc]


def test_keys() -> None:
    assert room_key("s1", "r") != room_key("s2", "r")
    assert ssrc_key("call-1", 42) == "call-1#42"


async def test_in_memory_repositories_hold_every_kind() -> None:
    repos = Repositories.in_memory()
    names = [name for name, _ in repos.items()]
    assert names == list(KINDS)
    assert all(isinstance(storage, MemoryStorage) for _, storage in repos.items())
    await repos.calls.set_all({"call": SAMPLES["calls"]})
    assert await repos.calls.get_all(["call", "missing"]) == {"call": SAMPLES["calls"]}


async def test_on_grid_rooms_are_replicated_and_insert_is_first_wins() -> None:
    async with single_node_grid() as grid:
        repos = Repositories.on_grid(grid, separated=False)
        assert isinstance(repos.rooms, ReplicatedStorage)
        assert repos.rooms.id == "observertc-rooms"
        key = room_key("svc", "room")
        assert await repos.rooms.insert_all({key: Room("svc", "room", "first")}) == {}
        lost = await repos.rooms.insert_all({key: Room("svc", "room", "second")})
        assert lost == {key: Room("svc", "room", "first")}
        # values travel through the raft log encoded with the entity codec
        await repos.inbound_tracks.set_all({"track": SAMPLES["inbound_tracks"]})
        assert await repos.inbound_tracks.get("track") == SAMPLES["inbound_tracks"]


@pytest.mark.skipif(not separated_storage_available(), reason="hamok SeparatedStorage not written yet")
async def test_on_grid_entities_are_separated() -> None:
    from hamok.storages.separated import SeparatedStorage

    async with single_node_grid() as grid:
        repos = Repositories.on_grid(grid)
        assert all(isinstance(storage, SeparatedStorage) for name, storage in repos.items()
                   if name not in ("rooms", "journal"))
        assert isinstance(repos.journal, ReplicatedStorage) and repos.journal.id == "observertc-lifecycle"
        await repos.clients.set_all({"client": SAMPLES["clients"]})
        assert await repos.clients.get_all(["client"]) == {"client": SAMPLES["clients"]}


async def test_on_grid_with_backups_restores_the_entities_of_a_lost_daemon() -> None:
    grids = await start_cluster(2)
    try:
        await wait_until(lambda: formed(grids), timeout=10)
        lost, survivor = (Repositories.on_grid(grid, use_backups=True) for grid in grids)
        assert lost.backups is not None and lost.backups.id == "observertc-repository-backups"
        await lost.clients.set_all({"client": SAMPLES["clients"]})
        await lost.backups.flush()
        await grids[0].close()
        for _ in range(1000):
            if await survivor.clients.get("client") == SAMPLES["clients"]:
                break
            await asyncio.sleep(0.01)
        assert await survivor.clients.get("client") == SAMPLES["clients"]
    finally:
        await close_all(grids)
