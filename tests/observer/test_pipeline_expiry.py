"""Leader-driven idle expiry with cascades and closing events (spec/observer.md §3.3, §3.4, §4.3, §5)."""

from __future__ import annotations

from observer.pipeline import MaxIdleSettings, PipelineSettings
from observer.reports.model import ReportType
from observer.repositories import Room, room_key
from tests.observer.test_pipeline_support import (
    SERVICE,
    T0,
    Harness,
    attachments,
    client_sample,
    event_counts,
    events,
    of_type,
    received,
    sfu_sample,
    short_idle,
    track,
)


def _settings(**idle: int) -> PipelineSettings:
    return PipelineSettings(max_idle=MaxIdleSettings(**idle)) if idle else PipelineSettings(max_idle=short_idle(5))


def _client(client_id: str, ts: int = T0, room: str = "room"):
    pc = f"pc-{client_id}"
    ssrc = sum(map(ord, client_id))
    return client_sample(client_id, room, ts, user_id=f"u-{client_id}", pc_ids=[pc],
                         outbound_audio=[track(f"{client_id}-out", pc, ssrc, sfuStreamId=f"S-{client_id}")],
                         inbound_audio=[track(f"{client_id}-in", pc, 5, sfuStreamId="S-x", sfuSinkId=f"K-{client_id}")])


def _call_id(reports) -> str:
    (call_id,) = {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)}
    return call_id


def test_interval_is_a_quarter_of_the_shortest_idle_time_bounded() -> None:
    assert Harness(PipelineSettings()).expirer.interval_s == 10.0
    assert Harness(_settings(client_s=20)).expirer.interval_s == 5.0
    assert Harness(_settings(client_s=1)).expirer.interval_s == 0.5


async def test_nothing_expires_before_its_idle_time() -> None:
    h = Harness(_settings())
    await h.feed(received([_client("a")]))
    assert await h.expire(5) == []  # exactly the limit: not past it yet
    assert await h.repos.clients.keys() == {"a"}


async def test_bug15_a_follower_never_expires_anything() -> None:
    h = Harness(_settings(), leader=False)
    await h.feed(received([_client("a")]))
    assert await h.expire(60) == []
    assert await h.repos.calls.size() == 1
    h.leader = True
    assert event_counts(await h.expire(0))["CALL_ENDED"] == 1


async def test_call_expiry_cascades_with_closing_events_exactly_once() -> None:
    h = Harness(_settings())
    first = await h.feed(received([_client("a", T0), _client("b", T0 + 300)]))
    call_id = _call_id(first)
    h.clock.advance(1)
    await h.feed(received([_client("a", T0 + 900)]))
    reports = await h.expire(6)
    assert event_counts(reports) == {"CALL_ENDED": 1, "CLIENT_LEFT": 2, "PEER_CONNECTION_CLOSED": 2,
                                     "MEDIA_TRACK_REMOVED": 4}
    left = {p["clientId"]: p for p in events(reports, "CLIENT_LEFT")}
    assert left["a"]["timestamp"] == T0 + 900 and left["b"]["timestamp"] == T0 + 300  # last sample time
    assert {p["callId"] for p in events(reports)} == {call_id}
    (ended,) = events(reports, "CALL_ENDED")
    call_touched = h.clock.now - 6000
    assert ended["timestamp"] == call_touched  # the call's last server touch, in ms
    removed = {p["mediaTrackId"]: attachments(p) for p in events(reports, "MEDIA_TRACK_REMOVED")}
    assert removed["a-out"]["streamDirection"] == "OUTBOUND"
    # everything is gone, indexes included, and a second pass emits nothing
    for name, storage in h.repos.items():
        assert await storage.keys() == set(), name
    assert await h.expire(1) == []


async def test_bug1_room_whose_call_ended_gets_a_new_call() -> None:
    h = Harness(_settings())
    old_call = _call_id(await h.feed(received([_client("a")])))
    await h.expire(6)
    assert await h.repos.rooms.keys() == set()
    reports = await h.feed(received([_client("a", T0 + 10_000)]))
    new_call = _call_id(reports)
    assert new_call != old_call
    counts = event_counts(reports)
    assert counts["CALL_STARTED"] == 1 and counts["CLIENT_JOINED"] == 1
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and room.call_id == new_call


async def test_bug7_client_that_idled_out_can_rejoin_its_living_call() -> None:
    h = Harness(_settings(call_s=300, client_s=5, peer_connection_s=5, inbound_track_s=5, outbound_track_s=5))
    call_id = _call_id(await h.feed(received([_client("a"), _client("b")])))
    h.clock.advance(4)
    await h.feed(received([_client("a", T0 + 4000)]))
    reports = await h.expire(2)
    assert [p["clientId"] for p in events(reports, "CLIENT_LEFT")] == ["b"]
    assert events(reports, "CALL_ENDED") == []
    rejoined = await h.feed(received([_client("b", T0 + 7000)]))
    (joined,) = events(rejoined, "CLIENT_JOINED")
    assert joined["clientId"] == "b" and joined["callId"] == call_id
    assert event_counts(rejoined)["MEDIA_TRACK_ADDED"] == 2
    client = await h.repos.clients.get("b")
    assert client is not None and client.call_id == call_id


async def test_a_closed_peer_connection_goes_alone() -> None:
    h = Harness(_settings())
    sample = client_sample("a", pc_ids=["pc-1", "pc-2"], outbound_audio=[track("t1", "pc-1", 1),
                                                                          track("t2", "pc-2", 2)])
    await h.feed(received([sample]))
    h.clock.advance(4)
    await h.feed(received([client_sample("a", ts=T0 + 4000, pc_ids=["pc-1"],
                                         outbound_audio=[track("t1", "pc-1", 1)])]))
    reports = await h.expire(2)
    assert event_counts(reports) == {"PEER_CONNECTION_CLOSED": 1, "MEDIA_TRACK_REMOVED": 1}
    assert events(reports, "PEER_CONNECTION_CLOSED")[0]["peerConnectionId"] == "pc-2"
    assert await h.repos.outbound_track_ssrcs.size() == 1


async def test_client_moved_to_a_new_call_leaves_the_old_one() -> None:
    """A call that ended while its client was quiet: the client's next samples join the new call."""
    h = Harness(_settings(call_s=5, client_s=300, peer_connection_s=300, inbound_track_s=300,
                          outbound_track_s=300))
    old_call = _call_id(await h.feed(received([_client("a")])))
    h.clock.advance(6)
    # the call ends, but the expirer would cascade to the client: simulate a client entity the
    # cascade did not reach yet by expiring only the call and its room
    await h.repos.calls.delete_all([old_call])
    await h.repos.rooms.delete_all([room_key(SERVICE, "room")])
    reports = await h.feed(received([_client("a", T0 + 6000)]))
    new_call = _call_id(reports)
    assert new_call != old_call
    left = events(reports, "CLIENT_LEFT")
    joined = events(reports, "CLIENT_JOINED")
    assert [(p["clientId"], p["callId"]) for p in left] == [("a", old_call)]
    assert [(p["clientId"], p["callId"]) for p in joined] == [("a", new_call)]
    assert event_counts(reports)["MEDIA_TRACK_REMOVED"] == 2 and event_counts(reports)["MEDIA_TRACK_ADDED"] == 2


async def test_orphan_room_is_released_after_two_passes() -> None:
    h = Harness(_settings())
    key = room_key(SERVICE, "room")
    await h.repos.rooms.set(key, Room(SERVICE, "room", "never-created"))
    await h.expire(0)
    assert await h.repos.rooms.keys() == {key}  # could be a call being created right now
    await h.expire(1)
    assert await h.repos.rooms.keys() == set()


async def test_room_with_a_dead_call_defers_its_samples_until_released() -> None:
    h = Harness(_settings())
    key = room_key(SERVICE, "room")
    await h.repos.rooms.set(key, Room(SERVICE, "room", "dead"))
    h.pipeline.accept(received([_client("a")]))
    h.pipeline._flush_buffer()
    await h.pipeline._worker  # the batch ran; its samples wait in the buffer
    assert h.pipeline.metrics.deferred._value.get() == 1
    assert of_type(h.reports + h.pipeline._reports, ReportType.OUTBOUND_AUDIO_TRACK) == []
    await h.expirer.run_once()
    await h.expirer.run_once()  # the orphan room goes on the second pass
    await h.pipeline.flush()
    assert len(of_type(h.reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1
    assert event_counts(h.reports)["CALL_STARTED"] == 1


# ------------------------------------------------------------------------------------------------ SFU
def _sfu(ts: int = T0, *, with_outbound: bool = True, with_channel: bool = True):
    return sfu_sample(
        "sfu-1", ts, transports=[{"transportId": "tr-1"}],
        inbound_pads=[{"transportId": "tr-1", "padId": "ip", "streamId": "s", "ssrc": 1}],
        outbound_pads=[{"transportId": "tr-1", "padId": "op", "streamId": "s", "sinkId": "k", "ssrc": 2,
                        "internal": True}] if with_outbound else [],
        sctp_channels=[{"transportId": "tr-1", "streamId": "ss", "channelId": "ch"}] if with_channel else [])


async def test_sfu_expiry_cascades_with_closing_events() -> None:
    h = Harness(_settings())
    await h.feed(received(sfu=[_sfu()]))
    reports = await h.expire(6)
    assert event_counts(reports) == {"SFU_LEFT": 1, "SFU_TRANSPORT_CLOSED": 1, "SFU_RTP_PAD_REMOVED": 2,
                                     "SFU_SCTP_STREAM_REMOVED": 1}
    for name in ("sfus", "sfu_transports", "sfu_inbound_rtp_pads", "sfu_outbound_rtp_pads", "sfu_sctp_channels",
                 "sfu_internal_outbound_pads"):
        assert await getattr(h.repos, name).keys() == set(), name


async def test_bug6_outbound_pads_expire_through_their_own_repository() -> None:
    h = Harness(_settings())
    await h.feed(received(sfu=[_sfu()]))
    h.clock.advance(4)
    await h.feed(received(sfu=[_sfu(T0 + 4000, with_outbound=False)]))
    reports = await h.expire(2)
    (removed,) = events(reports, "SFU_RTP_PAD_REMOVED")
    assert removed["rtpPadId"] == "op" and attachments(removed)["streamDirection"] == "OUTBOUND"
    assert await h.repos.sfu_outbound_rtp_pads.keys() == set()
    assert await h.repos.sfu_inbound_rtp_pads.keys() == {"ip"}
    assert await h.repos.sfu_internal_outbound_pads.keys() == set()


async def test_bug9_sctp_stream_removed_uses_last_sample_time() -> None:
    h = Harness(_settings())
    await h.feed(received(sfu=[_sfu(T0)]))
    h.clock.advance(1)
    await h.feed(received(sfu=[_sfu(T0 + 1000)]))
    h.clock.advance(3)
    await h.feed(received(sfu=[_sfu(T0 + 4000, with_channel=False)]))
    reports = await h.expire(3)
    (removed,) = events(reports, "SFU_SCTP_STREAM_REMOVED")
    assert removed["timestamp"] == T0 + 1000  # last sample that had the channel, not its opening time (T0)
