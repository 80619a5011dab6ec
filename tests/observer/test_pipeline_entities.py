"""Entity updates, touches and opening events exactly once (spec/observer.md §2.2, §2.3, §5)."""

from __future__ import annotations

import copy

from observer.pipeline import PipelineSettings
from observer.reports.model import ReportType
from tests.observer.test_pipeline_support import (
    MEDIA_UNIT,
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
    track,
    yielding_repositories,
)


def _alice(ts: int = T0, **kwargs):
    return client_sample(
        "alice", "room", ts, user_id="u-alice", pc_ids=["pc-a"],
        inbound_audio=[track("in-a1", "pc-a", 11)], inbound_video=[track("in-v1", "pc-a", 12)],
        outbound_audio=[track("out-a1", "pc-a", 21)], outbound_video=[track("out-v1", "pc-a", 22)],
        timeZoneOffsetInHours=2, **kwargs)


def _bob(ts: int = T0):
    return client_sample("bob", "room", ts, user_id="u-bob", pc_ids=["pc-b1", "pc-b2"],
                         outbound_audio=[track("out-b1", "pc-b1", 31)])


async def test_entities_are_created_with_their_sample_values() -> None:
    h = Harness()
    await h.feed(received([_alice(T0 + 5), _alice(T0 + 900)]))
    client = await h.repos.clients.get("alice")
    assert client is not None
    assert (client.joined, client.sample_touched, client.server_touched) == (T0 + 5, T0 + 900, h.clock.now)
    assert (client.user_id, client.media_unit_id, client.service_id, client.time_zone_id) == (
        "u-alice", MEDIA_UNIT, SERVICE, "+02:00")
    pc = await h.repos.peer_connections.get("pc-a")
    assert pc is not None and pc.client_id == "alice" and pc.call_id == client.call_id
    inbound = await h.repos.inbound_tracks.get_all(["in-a1", "in-v1"])
    assert {t.kind for t in inbound.values()} == {"AUDIO", "VIDEO"}
    assert inbound["in-a1"].ssrcs == (11,)
    outbound = await h.repos.outbound_tracks.get("out-v1")
    assert outbound is not None and outbound.kind == "VIDEO" and outbound.peer_connection_id == "pc-a"


async def test_bug9_pc_label_is_stored() -> None:
    h = Harness()
    await h.feed(received([_alice()]))
    pc = await h.repos.peer_connections.get("pc-a")
    assert pc is not None and pc.label == "label-pc-a"


async def test_repeated_samples_touch_entities_without_new_events() -> None:
    h = Harness()
    await h.feed(received([_alice()]))
    h.clock.advance(2)
    reports = await h.feed(received([_alice(T0 + 2000)]))
    assert events(reports) == []
    for storage, key in ((h.repos.clients, "alice"), (h.repos.peer_connections, "pc-a"),
                         (h.repos.inbound_tracks, "in-a1"), (h.repos.outbound_tracks, "out-a1")):
        entity = await storage.get(key)
        assert entity is not None
        assert (entity.sample_touched, entity.server_touched) == (T0 + 2000, h.clock.now), key
    call = await h.repos.calls.get(entity.call_id)
    assert call is not None and (call.sample_touched, call.server_touched) == (T0 + 2000, h.clock.now)


async def test_events_exactly_once_when_the_same_samples_arrive_twice() -> None:
    h = Harness()
    frame = [_alice(), _bob()]
    await h.feed(received(copy.deepcopy(frame)))
    await h.feed(received(copy.deepcopy(frame)))
    counts = event_counts(h.reports)
    assert counts == {"CALL_STARTED": 1, "CLIENT_JOINED": 2, "PEER_CONNECTION_OPENED": 3, "MEDIA_TRACK_ADDED": 5}


async def test_opening_events_carry_the_entity_fields() -> None:
    h = Harness()
    reports = await h.feed(received([_alice(T0 + 7)]))
    (joined,) = events(reports, "CLIENT_JOINED")
    assert (joined["clientId"], joined["userId"], joined["mediaUnitId"], joined["timestamp"]) == (
        "alice", "u-alice", MEDIA_UNIT, T0 + 7)
    assert attachments(joined) == {"timeZoneId": "+02:00"}
    (opened,) = events(reports, "PEER_CONNECTION_OPENED")
    assert opened["peerConnectionId"] == "pc-a" and opened["callId"] == joined["callId"]
    added = {p["mediaTrackId"]: p for p in events(reports, "MEDIA_TRACK_ADDED")}
    assert added["in-a1"]["SSRC"] == 11
    assert attachments(added["in-a1"])["streamDirection"] == "INBOUND"


async def test_bug9_outbound_media_track_attachments_carry_the_kind() -> None:
    h = Harness()
    reports = await h.feed(received([_alice()]))
    added = {p["mediaTrackId"]: attachments(p) for p in events(reports, "MEDIA_TRACK_ADDED")}
    assert added["out-v1"]["mediaKind"] == "VIDEO" and added["out-v1"]["streamDirection"] == "OUTBOUND"
    assert added["out-a1"]["mediaKind"] == "AUDIO"
    assert added["in-v1"]["mediaKind"] == "VIDEO"


async def test_new_ssrcs_are_added_to_a_track() -> None:
    h = Harness()
    await h.feed(received([_alice()]))
    sample = _alice(T0 + 1000)
    sample["outboundAudioTracks"].append(track("out-a1", "pc-a", 99))
    await h.feed(received([sample]))
    entity = await h.repos.outbound_tracks.get("out-a1")
    assert entity is not None and entity.ssrcs == (21, 99)


async def test_elements_without_ids_make_reports_but_no_entities() -> None:
    h = Harness()
    sample = client_sample("alice", outbound_audio=[{"peerConnectionId": "pc-x", "ssrc": 5}])
    reports = await h.feed(received([sample]))
    assert await h.repos.outbound_tracks.keys() == set()
    assert len(of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1


async def test_call_updater_disabled_reports_with_the_clients_call_id_and_tracks_nothing() -> None:
    h = Harness(PipelineSettings(call_updater_enabled=False))
    reports = await h.feed(received([_alice(call_id="given")]))
    assert {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)} == {"given"}
    assert events(reports) == []
    assert await h.repos.clients.keys() == set()


# ------------------------------------------------------------------------------------------------ SFU
def _sfu(ts: int = T0, **extra):
    return sfu_sample(
        "sfu-1", ts,
        transports=[{"transportId": "tr-1", "internal": False}],
        inbound_pads=[{"transportId": "tr-1", "padId": "in-pad", "streamId": "stream-1", "ssrc": 1}],
        outbound_pads=[{"transportId": "tr-2", "padId": "out-pad", "streamId": "stream-1", "sinkId": "sink-1",
                        "ssrc": 2}],
        sctp_channels=[{"transportId": "tr-1", "streamId": "sctp-s", "channelId": "ch-1"}],
        **extra)


async def test_sfu_entities_and_events() -> None:
    h = Harness()
    reports = await h.feed(received(sfu=[_sfu()]))
    assert event_counts(reports) == {"SFU_JOINED": 1, "SFU_TRANSPORT_OPENED": 2, "SFU_RTP_PAD_ADDED": 2,
                                     "SFU_SCTP_STREAM_ADDED": 1}
    pads = {p["rtpPadId"]: p for p in events(reports, "SFU_RTP_PAD_ADDED")}
    assert pads["out-pad"]["mediaSinkId"] == "sink-1" and pads["out-pad"]["mediaStreamId"] == "stream-1"
    assert attachments(pads["out-pad"]) == {"streamDirection": "OUTBOUND", "internal": False}
    (sctp,) = events(reports, "SFU_SCTP_STREAM_ADDED")
    assert sctp["sctpStreamId"] == "sctp-s" and sctp["transportId"] == "tr-1"
    again = await h.feed(received(sfu=[_sfu(T0 + 1000)]))
    assert events(again) == []


async def test_bug5_sfu_server_touched_is_milliseconds() -> None:
    h = Harness()
    await h.feed(received(sfu=[_sfu()]))
    for storage, key in ((h.repos.sfus, "sfu-1"), (h.repos.sfu_transports, "tr-1"),
                         (h.repos.sfu_inbound_rtp_pads, "in-pad"), (h.repos.sfu_outbound_rtp_pads, "out-pad"),
                         (h.repos.sfu_sctp_channels, "ch-1")):
        entity = await storage.get(key)
        assert entity is not None and entity.server_touched == h.clock.now, key
    # well inside the 300 s idle limit nothing expires (the reference wiped SFUs: seconds vs ms)
    assert events(await h.expire(60)) == []
    assert await h.repos.sfus.keys() == {"sfu-1"}


async def test_bug9_custom_sfu_events_carry_sfu_id() -> None:
    h = Harness()
    custom = {"name": "LAYER_SWITCH", "sfuStreamId": "stream-1", "sfuSinkId": "sink-1", "transportId": "tr-1"}
    reports = await h.feed(received(sfu=[_sfu(customSfuEvents=[custom])]))
    (event,) = events(reports, "LAYER_SWITCH")
    assert (event["sfuId"], event["mediaStreamId"], event["mediaSinkId"]) == ("sfu-1", "stream-1", "sink-1")


async def test_sfu_pad_with_null_ssrc_is_tracked() -> None:
    """The reference's SFU branch died on a null SSRC (NPE building the protobuf model)."""
    h = Harness()
    sample = sfu_sample("sfu-1", inbound_pads=[{"transportId": "tr-1", "padId": "p", "streamId": "s"}])
    reports = await h.feed(received(sfu=[sample]))
    pad = await h.repos.sfu_inbound_rtp_pads.get("p")
    assert pad is not None and pad.ssrc is None
    assert event_counts(reports)["SFU_RTP_PAD_ADDED"] == 1


async def test_storage_access_is_one_bulk_call_per_kind_and_operation_per_batch() -> None:
    repos = yielding_repositories()
    h = Harness(repositories=repos)
    many = [client_sample(f"c{i}", f"room-{i % 7}", pc_ids=[f"pc{i}"],
                          outbound_audio=[track(f"o{i}", f"pc{i}", i)],
                          inbound_audio=[track(f"i{i}", f"pc{i}", 1000 + i)]) for i in range(50)]
    await h.feed(received([_alice(), _bob()]), received(many), received(sfu=[_sfu()]))
    for name, storage in repos.items():
        for operation in ("get_all", "set_all", "insert_all", "delete_all"):
            assert storage.calls[operation] <= 1, (name, operation, storage.calls[operation])
    assert repos.clients.calls["get_all"] == 1 and repos.clients.calls["set_all"] == 1
    assert repos.inbound_tracks.calls["set_all"] == 1 and repos.outbound_track_ssrcs.calls["get_all"] == 1


async def test_a_call_ended_while_the_batch_ran_is_not_resurrected_by_its_touch() -> None:
    h = Harness()
    await h.feed(received([_alice()]))
    (call_id,) = await h.repos.calls.keys()
    original = h.repos.calls.set_all

    async def expired_meanwhile(entries):  # the expirer deletes the call between read and touch
        await h.repos.calls.delete_all(list(entries))
        return await original(entries)

    h.repos.calls.set_all = expired_meanwhile  # type: ignore[method-assign]
    reports = await h.feed(received([_alice(T0 + 1000)]))
    assert await h.repos.calls.keys() == set()
    assert events(reports, "CALL_STARTED") == [] and events(reports, "CALL_ENDED") == []
    assert {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)} == {call_id}
