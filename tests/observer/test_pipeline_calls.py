"""Call identification in master and slave mode (spec/observer.md §4, the CallsFetcher tests of §11)."""

from __future__ import annotations

import asyncio

from observer.pipeline import SLAVE, PipelineSettings
from observer.reports.model import ReportType
from observer.repositories import Call, Room, room_key
from tests.observer.test_pipeline_support import (
    SERVICE,
    T0,
    Harness,
    client_sample,
    event_counts,
    events,
    of_type,
    received,
    track,
    yielding_repositories,
)


def _call_ids(reports) -> set[str]:
    return {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)}


def _sample(client_id: str, room: str = "room", ts: int = T0, **kwargs):
    return client_sample(client_id, room, ts, pc_ids=[f"pc-{client_id}"],
                         outbound_audio=[track(f"out-{client_id}", f"pc-{client_id}", 1)], **kwargs)


# ------------------------------------------------------------------------------------------- master
async def test_master_two_clients_of_a_room_share_one_call_over_batches() -> None:
    h = Harness()
    first = await h.feed(received([_sample("a"), _sample("b")]))
    second = await h.feed(received([_sample("a", ts=T0 + 1000)]), received([_sample("b", ts=T0 + 1000)]))
    assert len(_call_ids(first)) == 1
    assert _call_ids(first) == _call_ids(second)
    assert event_counts(h.reports)["CALL_STARTED"] == 1
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and {room.call_id} == _call_ids(first)
    call = await h.repos.calls.get(room.call_id)
    assert call is not None and call.room_id == "room" and call.started == h.clock.now


async def test_master_ignores_client_provided_call_ids() -> None:
    h = Harness()
    reports = await h.feed(received([_sample("a", call_id="mine-1"), _sample("b", call_id="mine-2")]))
    (call_id,) = _call_ids(reports)
    assert call_id not in ("mine-1", "mine-2")
    assert await h.repos.calls.keys() == {call_id}


async def test_bug14_rooms_are_per_service() -> None:
    h = Harness()
    reports = await h.feed(received([_sample("a")], service_id="s1"), received([_sample("b")], service_id="s2"))
    assert len(_call_ids(reports)) == 2
    assert event_counts(reports)["CALL_STARTED"] == 2


async def test_bug9_call_marker_is_the_first_sample_marker() -> None:
    h = Harness()
    reports = await h.feed(received([_sample("client-a"), _sample("client-b", marker="m-1")]))
    (started,) = events(reports, "CALL_STARTED")
    assert started["marker"] == "m-1"


async def test_master_concurrent_daemons_start_one_call_per_room() -> None:
    """Two pipelines on shared repositories race for the same new room."""
    repos = yielding_repositories()
    one, two = Harness(repositories=repos), Harness(repositories=repos)
    await asyncio.gather(one.feed(received([_sample("a")])), two.feed(received([_sample("b")])))
    assert repos.rooms.calls["insert_all"] == 2  # both proposed a call for the room; one lost
    await asyncio.gather(one.feed(received([_sample("a", ts=T0 + 1)])), two.feed(received([_sample("b", ts=T0 + 1)])))
    all_reports = one.reports + two.reports
    assert event_counts(all_reports)["CALL_STARTED"] == 1
    assert len(_call_ids(all_reports)) == 1
    assert event_counts(all_reports)["CLIENT_JOINED"] == 2


# ------------------------------------------------------------------------------------------- slave
def _slave() -> Harness:
    return Harness(PipelineSettings(call_id_assign_mode=SLAVE))


async def test_slave_without_call_id_creates_no_room() -> None:
    h = _slave()
    reports = await h.feed(received([_sample("a")]))
    assert await h.repos.rooms.keys() == set()
    assert await h.repos.clients.keys() == set()
    assert of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK) == []
    assert h.pipeline.metrics.dropped.labels("no_call_id")._value.get() == 1


async def test_bug2_null_call_id_does_not_abort_the_batch() -> None:
    h = _slave()
    reports = await h.feed(received([_sample("a"), _sample("b", call_id="call-1")]))
    tracks = of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)
    assert [(p["clientId"], p["callId"]) for p in tracks] == [("b", "call-1")]


async def test_slave_call_id_creates_room_and_call_started_at_the_first_sample() -> None:
    h = _slave()
    reports = await h.feed(received([_sample("a", ts=T0 + 500, call_id="call-1"),
                                     _sample("b", ts=T0 + 200, call_id="call-1")]))
    (started,) = events(reports, "CALL_STARTED")
    assert started["callId"] == "call-1" and started["timestamp"] == T0 + 200
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and room.call_id == "call-1"
    assert await h.repos.calls.keys() == {"call-1"}


async def test_bug_slave_mode_ends_the_replaced_call() -> None:
    h = _slave()
    await h.feed(received([_sample("a", call_id="old"), _sample("b", call_id="old")]))
    h.clock.advance(1)
    reports = await h.feed(received([_sample("a", ts=T0 + 1000, call_id="new")]))
    counts = event_counts(reports)
    assert counts["CALL_ENDED"] == 1 and counts["CALL_STARTED"] == 1
    (ended,) = events(reports, "CALL_ENDED")
    assert ended["callId"] == "old"
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and room.call_id == "new" and "old" in room.ended_call_ids
    assert await h.repos.calls.keys() == {"new"}
    client = await h.repos.clients.get("a")
    assert client is not None and client.call_id == "new"
    # a client still on the replaced call keeps its callId in its reports, without switching the room back
    stale = await h.feed(received([_sample("b", ts=T0 + 2000, call_id="old")]))
    assert {p["callId"] for p in of_type(stale, ReportType.OUTBOUND_AUDIO_TRACK)} == {"old"}
    assert events(stale) == []
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and room.call_id == "new"
    assert await h.repos.calls.keys() == {"new"}


async def test_slave_replaced_calls_clients_are_removed_by_the_expirer() -> None:
    h = _slave()
    await h.feed(received([_sample("a", call_id="old"), _sample("b", call_id="old")]))
    await h.feed(received([_sample("a", ts=T0 + 1000, call_id="new")]))
    reports = await h.expire(1)
    left = events(reports, "CLIENT_LEFT")
    assert [(p["clientId"], p["callId"]) for p in left] == [("b", "old")]
    assert await h.repos.clients.keys() == {"a"}


async def test_slave_remedy_client_is_tracked_under_its_own_call() -> None:
    """A call that exists but is not its room's current call (a concurrent switch elsewhere)."""
    h = _slave()
    await h.feed(received([_sample("a", call_id="one")]))
    # the room moves on without ending "one" (as a concurrent switch on another daemon can leave it)
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None
    await h.repos.rooms.set(room_key(SERVICE, "room"), Room(SERVICE, "room", "two"))
    await h.repos.calls.set("two", Call(SERVICE, "room", "two", T0, None, T0, h.clock.now))
    reports = await h.feed(received([_sample("a", ts=T0 + 1000, call_id="one"),
                                     _sample("b", ts=T0 + 1000, call_id="two")]))
    assert events(reports, "CALL_STARTED") == [] and events(reports, "CALL_ENDED") == []
    client_a = await h.repos.clients.get("a")
    client_b = await h.repos.clients.get("b")
    assert client_a is not None and client_a.call_id == "one"
    assert client_b is not None and client_b.call_id == "two"


async def test_slave_two_new_call_ids_in_one_batch_switch_the_room_once() -> None:
    h = _slave()
    reports = await h.feed(received([_sample("a", ts=T0, call_id="early"),
                                     _sample("b", ts=T0 + 5, call_id="late")]))
    assert [p["callId"] for p in events(reports, "CALL_STARTED")] == ["late"]
    room = await h.repos.rooms.get(room_key(SERVICE, "room"))
    assert room is not None and room.call_id == "late" and room.ended_call_ids == ("early",)
    # the client on the losing id stays untracked and does not flip the room
    again = await h.feed(received([_sample("a", ts=T0 + 10, call_id="early")]))
    assert events(again) == []
    assert (await h.repos.rooms.get(room_key(SERVICE, "room"))).call_id == "late"  # type: ignore[union-attr]
