"""The lifecycle journal (docs/cluster.md, "Without backups"): what a daemon lost without backups
took with it is re-created from the journal when its clients come back, and ended once after idle
when they do not. One process here: the loss of the owning daemon is simulated by emptying every
separated storage (rooms and the journal are replicated: they survive); the grid tests are in
test_pipeline_cluster.py."""

from __future__ import annotations

from typing import Any

from observer.pipeline import SLAVE, PipelineSettings
from observer.reports.model import ReportType
from observer.repositories import Repositories, client_key, replace, room_key
from tests.observer.test_pipeline_support import (
    SERVICE,
    T0,
    Harness,
    client_sample,
    event_counts,
    events,
    of_type,
    received,
    short_idle,
    track,
    yielding_repositories,
)

OPENING = ("CALL_STARTED", "CLIENT_JOINED", "PEER_CONNECTION_OPENED", "MEDIA_TRACK_ADDED")
CLOSING = ("CALL_ENDED", "CLIENT_LEFT", "PEER_CONNECTION_CLOSED", "MEDIA_TRACK_REMOVED")


def _client(client_id: str, ts: int = T0, room_id: str = "room", **kwargs: Any) -> dict[str, Any]:
    """Each client publishes on SSRC 1xx and receives the other's 1xx (a p2p pair a/b)."""
    other = {"a": "b", "b": "a"}.get(client_id, "x")
    pc = f"pc-{client_id}"
    return client_sample(client_id, room_id, ts, user_id=f"u-{client_id}", pc_ids=[pc],
                         outbound_audio=[track(f"{client_id}-out", pc, 100 + ord(client_id))],
                         inbound_audio=[track(f"{client_id}-in", pc, 100 + ord(other))], **kwargs)


def _settings(**kwargs: Any) -> PipelineSettings:
    return PipelineSettings(max_idle=short_idle(5), **kwargs)


async def _lose_the_owner(repos: Repositories) -> None:
    """The daemon holding every separated entry dies without backups."""
    for name, storage in repos.items():
        if name not in ("rooms", "journal"):
            await storage.clear()


def _call_ids(reports) -> set[str]:
    return {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)} | {
        p["callId"] for p in events(reports) if p.get("callId")}


async def test_created_entities_are_journaled_with_one_write_per_batch_and_leave_when_they_end() -> None:
    repos = yielding_repositories()
    h = Harness(_settings(), repositories=repos)
    await h.feed(received([_client("a"), _client("b")]))
    journal = repos.journal
    assert journal.calls["set_all"] == 1  # type: ignore[attr-defined]
    (call_id,) = await repos.calls.keys()
    assert {key[0] for key in await journal.keys()} == {"call", "client", "pc", "in", "out"}
    assert len(await journal.keys()) == 1 + 2 + 2 + 4
    entry = await journal.get(client_key(call_id, "a"))
    assert entry is not None and entry.entity == await repos.clients.get("a")
    # samples of known entities do not write the journal
    await h.feed(received([_client("a", T0 + 500), _client("b", T0 + 500)]))
    assert journal.calls["set_all"] == 1  # type: ignore[attr-defined]
    assert event_counts(await h.expire(6))["CALL_ENDED"] == 1
    assert await journal.keys() == set()
    assert journal.calls["delete_all"] == 1  # type: ignore[attr-defined]


async def test_lost_entities_come_back_without_opening_events_and_keep_their_call() -> None:
    h = Harness(_settings())
    first = await h.feed(received([_client("a"), _client("b")]))
    (call_id,) = _call_ids(first)
    await _lose_the_owner(h.repos)
    again = await h.feed(received([_client("a", T0 + 1000), _client("b", T0 + 1000)]))
    assert not any(event_counts(again)[name] for name in OPENING + CLOSING)
    assert _call_ids(again) == {call_id}
    assert h.pipeline.metrics.restored.labels("client")._value.get() == 2
    client = await h.repos.clients.get("a")
    assert client is not None and client.joined == T0 and client.sample_touched == T0 + 1000
    assert await h.repos.calls.keys() == {call_id}
    # the SSRC index went with the daemon and is written again: p2p matching still works
    inbound = {p["trackId"]: p for p in of_type(again, ReportType.INBOUND_AUDIO_TRACK)}
    assert inbound["a-in"]["remoteTrackId"] == "b-out" and inbound["b-in"]["remoteClientId"] == "a"
    # and it all ends once
    ended = await h.expire(6)
    assert {name: event_counts(ended)[name] for name in CLOSING} == {
        "CALL_ENDED": 1, "CLIENT_LEFT": 2, "PEER_CONNECTION_CLOSED": 2, "MEDIA_TRACK_REMOVED": 4}


async def test_lost_entities_that_do_not_come_back_end_once_after_their_idle_time() -> None:
    h = Harness(_settings())
    await h.feed(received([_client("a"), _client("b", T0 + 300)]))
    h.clock.advance(1)
    await h.feed(received([_client("a", T0 + 900)]))
    assert await h.expire(1) == []
    await _lose_the_owner(h.repos)
    assert await h.expire(3) == []  # found missing
    missing_since = h.clock.now
    assert await h.expire(3) == []  # their clients have the whole idle time to come back
    assert await h.repos.rooms.size() == 1  # and the call keeps its room meanwhile
    ended = await h.expire(3)
    assert {name: event_counts(ended)[name] for name in CLOSING} == {
        "CALL_ENDED": 1, "CLIENT_LEFT": 2, "PEER_CONNECTION_CLOSED": 2, "MEDIA_TRACK_REMOVED": 4}
    # the leader cannot know the last samples the lost daemon saw: the time it found them gone
    assert {p["timestamp"] for p in events(ended) if p["name"] in CLOSING} == {missing_since}
    assert h.expirer.metrics.lost_ended.labels("client")._value.get() == 2
    for name, storage in h.repos.items():
        assert await storage.size() == 0, name  # journal emptied, room released
    assert await h.expire(10) == []
    # the clients come back later: a new call
    back = await h.feed(received([_client("a", T0 + 60_000)]))
    assert event_counts(back)["CALL_STARTED"] == 1 and event_counts(back)["CLIENT_JOINED"] == 1


async def test_entities_lost_before_the_leader_saw_them_get_the_whole_idle_time_from_then() -> None:
    h = Harness(_settings())
    await h.feed(received([_client("a")]))
    await _lose_the_owner(h.repos)
    h.clock.advance(60)  # long past the idle time since they were created
    assert await h.expire(0) == []  # first seen missing now
    assert await h.expire(5) == []
    ended = await h.expire(1)
    assert event_counts(ended)["CLIENT_LEFT"] == 1 and event_counts(ended)["CALL_ENDED"] == 1


async def test_lost_call_keeps_its_living_clients_and_ends_after_them() -> None:
    """The call's daemon died; its clients live on other daemons (here: recreated elsewhere)."""
    h = Harness(_settings())
    await h.feed(received([_client("a"), _client("b")]))
    (call_id,) = await h.repos.calls.keys()
    await h.repos.calls.clear()  # only the call was on the lost daemon
    h.clock.advance(3)
    await h.feed(received([_client("b", T0 + 3000)]))  # b continues: its daemon re-creates the call
    assert await h.repos.calls.keys() == {call_id}
    assert events(h.reports, "CALL_STARTED")[0]["callId"] == call_id and event_counts(h.reports)["CALL_STARTED"] == 1
    ended = await h.expire(3)  # a idled out, b did not
    assert [p["clientId"] for p in events(ended, "CLIENT_LEFT")] == ["a"]
    assert event_counts(await h.expire(6))["CALL_ENDED"] == 1


async def test_lost_call_is_not_released_as_an_orphan_room_while_it_waits() -> None:
    h = Harness(_settings())
    first = await h.feed(received([_client("a")]))
    (call_id,) = _call_ids(first)
    await _lose_the_owner(h.repos)
    for _ in range(3):  # an orphan room would be released on the second pass
        await h.expire(1)
    assert await h.repos.rooms.get(room_key(SERVICE, "room")) is not None
    again = await h.feed(received([_client("a", T0 + 3000)]))
    assert _call_ids(again) == {call_id} and event_counts(h.reports)["CALL_STARTED"] == 1


async def test_slave_mode_restores_the_lost_call_under_its_own_call_id() -> None:
    h = Harness(_settings(call_id_assign_mode=SLAVE))
    await h.feed(received([_client("a", call_id="c-1"), _client("b", call_id="c-1")]))
    await _lose_the_owner(h.repos)
    again = await h.feed(received([_client("a", T0 + 1000, call_id="c-1")]))
    assert not any(event_counts(again)[name] for name in OPENING + CLOSING)
    assert await h.repos.calls.keys() == {"c-1"}
    # the replaced call ends once, through its journal entry, though its entity is lost again
    await _lose_the_owner(h.repos)
    switched = await h.feed(received([_client("a", T0 + 2000, call_id="c-2")]))
    assert [(p["name"], p["callId"]) for p in events(switched) if p["name"].startswith("CALL")] == [
        ("CALL_ENDED", "c-1"), ("CALL_STARTED", "c-2")]
    assert [p["callId"] for p in events(switched, "CLIENT_JOINED")] == ["c-2"]
    # b never came back: it leaves c-1 once after idle, a leaves c-2
    ended = await h.expire(6)
    # a's entity in c-1 was lost too, so it was not moved at the switch: its journal entry ends it
    assert sorted((p["clientId"], p["callId"]) for p in events(ended, "CLIENT_LEFT")) == [
        ("a", "c-1"), ("a", "c-2"), ("b", "c-1")]
    assert [p["callId"] for p in events(ended, "CALL_ENDED")] == ["c-2"]


async def test_a_restored_entity_the_leader_ended_meanwhile_is_removed_again() -> None:
    h = Harness(_settings())
    await h.feed(received([_client("a")]))
    await _lose_the_owner(h.repos)
    original = h.repos.outbound_track_ssrcs.insert_all

    async def ended_meanwhile(entries):  # the leader ends the lost call and its client now
        await h.repos.journal.clear()
        return await original(entries)

    h.repos.outbound_track_ssrcs.insert_all = ended_meanwhile  # type: ignore[method-assign]
    again = await h.feed(received([_client("a", T0 + 1000)]))
    assert not any(event_counts(again)[name] for name in OPENING + CLOSING)
    for name in ("calls", "clients", "peer_connections", "inbound_tracks", "outbound_tracks"):
        assert await getattr(h.repos, name).size() == 0, name


async def test_the_leader_never_ends_an_incarnation_twice() -> None:
    """Copies that outlive their end (a journal entry written late, a storage delete that did not
    happen) are removed without a second closing event."""
    h = Harness(_settings())
    await h.feed(received([_client("a")]))
    journal = dict([kv async for kv in h.repos.journal.items()])
    client = await h.repos.clients.get("a")
    assert client is not None
    ended = await h.expire(6)
    assert event_counts(ended)["CLIENT_LEFT"] == 1
    await h.repos.journal.set_all(journal)  # a journal write that landed after the end
    await h.repos.clients.set_all({"a": client})  # a delete that missed its entity
    assert await h.expire(1) == []
    assert await h.expire(10) == []
    for name, storage in h.repos.items():
        assert await storage.size() == 0, name


async def test_a_new_incarnation_under_an_ended_ones_key_still_ends() -> None:
    idle = short_idle(5)
    h = Harness(PipelineSettings(max_idle=type(idle)(300, *([5] * 9))))
    await h.feed(received([_client("a"), _client("b")]))
    h.clock.advance(3)
    await h.feed(received([_client("b", T0 + 3000)]))
    assert [p["clientId"] for p in events(await h.expire(3), "CLIENT_LEFT")] == ["a"]
    back = await h.feed(received([_client("a", T0 + 6000), _client("b", T0 + 6000)]))
    assert [p["clientId"] for p in events(back, "CLIENT_JOINED")] == ["a"]  # same call, same key
    await _lose_the_owner(h.repos)
    assert await h.expire(1) == []  # found missing
    ended = await h.expire(6)
    assert sorted(p["clientId"] for p in events(ended, "CLIENT_LEFT")) == ["a", "b"]


async def _hide_a_loss(h: Harness, pcs: int) -> None:
    """Stored entities without a journal entry (their journal write failed) make the storages look
    as big as the journal, so the leader's cheap size check misses lost entities."""
    pc = await h.repos.peer_connections.get("pc-b")
    assert pc is not None
    await h.repos.peer_connections.set_all({f"pc-extra-{i}": replace(pc, peer_connection_id=f"pc-extra-{i}")
                                            for i in range(pcs)})


async def test_a_lost_call_is_found_through_its_orphaned_clients_whatever_the_counts() -> None:
    h = Harness(_settings())
    await h.feed(received([_client("a"), _client("b")]))
    assert await h.expire(1) == []  # the first pass of a leader reads the whole journal
    await _hide_a_loss(h, 1)
    await h.repos.calls.clear()  # only the call was on the lost daemon
    assert await h.expire(1) == []  # its clients lost their parent: the journal is read, it waits
    assert await h.repos.clients.keys() == {"a", "b"}
    ended = await h.expire(6)
    assert event_counts(ended)["CALL_ENDED"] == 1 and event_counts(ended)["CLIENT_LEFT"] == 2


async def test_a_lost_call_keeps_its_room_whatever_the_counts() -> None:
    h = Harness(_settings())
    first = await h.feed(received([_client("a")]), received([_client("b", room_id="other")]))
    (call_a,) = {p["callId"] for p in events(first, "CLIENT_JOINED") if p["clientId"] == "a"}
    assert await h.expire(1) == []
    await _hide_a_loss(h, 8)
    # everything of room "room" was on the lost daemon
    for name in ("calls", "clients", "peer_connections", "inbound_tracks", "outbound_tracks"):
        storage = getattr(h.repos, name)
        await storage.delete_all([k for k, v in [kv async for kv in storage.items()] if v.call_id == call_a])
    for _ in range(3):  # an orphan room goes on the second pass
        assert await h.expire(1) == []
    assert await h.repos.rooms.get(room_key(SERVICE, "room")) is not None
    again = await h.feed(received([_client("a", T0 + 3000)]))
    assert _call_ids(again) == {call_a} and event_counts(h.reports)["CALL_STARTED"] == 2
