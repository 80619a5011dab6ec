"""Inbound -> remote outbound track matching and SFU pad attribution (spec/observer.md §6)."""

from __future__ import annotations

from observer.pipeline import PipelineSettings
from observer.reports.model import ReportType
from tests.observer.test_pipeline_support import (
    T0,
    Harness,
    client_sample,
    of_type,
    received,
    sfu_sample,
    track,
)


def _remote(payload):
    return (payload["remoteClientId"], payload["remoteUserId"], payload["remotePeerConnectionId"],
            payload["remoteTrackId"])


def _inbound(reports):
    return {p["trackId"]: p for p in of_type(reports, ReportType.INBOUND_AUDIO_TRACK)}


def _p2p_alice(ts: int = T0):
    return client_sample("alice", "room", ts, user_id="ua", pc_ids=["pc-a"],
                         outbound_audio=[track("a-out", "pc-a", 1001)], inbound_audio=[track("a-in", "pc-a", 2002)])


def _p2p_bob(ts: int = T0):
    return client_sample("bob", "room", ts, user_id="ub", pc_ids=["pc-b"],
                         outbound_audio=[track("b-out", "pc-b", 2002)], inbound_audio=[track("b-in", "pc-b", 1001)])


async def test_p2p_inbound_matches_the_remote_outbound_by_ssrc_in_one_batch() -> None:
    h = Harness()
    inbound = _inbound(await h.feed(received([_p2p_alice(), _p2p_bob()])))
    assert _remote(inbound["b-in"]) == ("alice", "ua", "pc-a", "a-out")
    assert _remote(inbound["a-in"]) == ("bob", "ub", "pc-b", "b-out")


async def test_bug3_p2p_inbound_matched_from_the_inbound_side_across_batches() -> None:
    """Bob's inbound track is matched although Alice's outbound track was reported in an
    earlier batch only (the reference started from outbound tracks of the same batch, behind an
    inverted guard that skipped P2P tracks altogether)."""
    h = Harness()
    await h.feed(received([_p2p_alice()]))
    inbound = _inbound(await h.feed(received([_p2p_bob(T0 + 1000)])))
    assert _remote(inbound["b-in"]) == ("alice", "ua", "pc-a", "a-out")
    entity = await h.repos.inbound_tracks.get("b-in")
    assert entity is not None and entity.remote is not None and entity.remote.track_id == "a-out"
    # later batches reuse the match kept on the entity
    inbound = _inbound(await h.feed(received([_p2p_bob(T0 + 2000)])))
    assert _remote(inbound["b-in"]) == ("alice", "ua", "pc-a", "a-out")


async def test_p2p_never_matches_the_clients_own_outbound_track() -> None:
    h = Harness()
    sample = client_sample("alice", "room", pc_ids=["pc-a"], outbound_audio=[track("a-out", "pc-a", 7)],
                           inbound_audio=[track("a-in", "pc-a", 7)])
    inbound = _inbound(await h.feed(received([sample])))
    assert inbound["a-in"]["remoteTrackId"] is None


async def test_p2p_ssrcs_match_only_inside_the_same_call() -> None:
    h = Harness()
    other_room = client_sample("carol", "elsewhere", pc_ids=["pc-c"], outbound_audio=[track("c-out", "pc-c", 1001)])
    inbound = _inbound(await h.feed(received([other_room, _p2p_bob()])))
    assert inbound["b-in"]["remoteTrackId"] is None


def _sfu_publisher(ts: int = T0):
    return client_sample("pub", "room", ts, user_id="u-pub", pc_ids=["pc-pub"],
                         outbound_audio=[track("pub-out", "pc-pub", 5, sfuStreamId="S1")])


def _sfu_subscriber(ts: int = T0):
    return client_sample("sub", "room", ts, user_id="u-sub", pc_ids=["pc-sub"],
                         inbound_audio=[track("sub-in", "pc-sub", 6, sfuStreamId="S1", sfuSinkId="K1")])


async def test_sfu_inbound_matches_the_publisher_by_sfu_stream_id_across_batches() -> None:
    h = Harness()
    await h.feed(received([_sfu_publisher()]))
    inbound = _inbound(await h.feed(received([_sfu_subscriber()])))
    assert _remote(inbound["sub-in"]) == ("pub", "u-pub", "pc-pub", "pub-out")


async def test_drop_unmatched_reports_drops_only_unmatched_inbound_reports() -> None:
    h = Harness(PipelineSettings(drop_unmatched_reports=True))
    lonely = client_sample("bob", "room", pc_ids=["pc-b"], inbound_audio=[track("b-in", "pc-b", 1)],
                           outbound_audio=[track("b-out", "pc-b", 2)])
    reports = await h.feed(received([lonely]))
    assert of_type(reports, ReportType.INBOUND_AUDIO_TRACK) == []
    assert len(of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1
    reports = await h.feed(received([_sfu_publisher(), _sfu_subscriber()]))
    assert list(_inbound(reports)) == ["sub-in"]


async def test_match_tracks_disabled_leaves_remote_fields_empty() -> None:
    h = Harness(PipelineSettings(match_tracks=False))
    inbound = _inbound(await h.feed(received([_p2p_alice(), _p2p_bob()])))
    assert inbound["b-in"]["remoteTrackId"] is None


# ---------------------------------------------------------------------------------------------- SFU pads
def _sfu(*, inbound_pads=(), outbound_pads=(), sfu_id="sfu-1", transport_internal=False):
    return sfu_sample(sfu_id, T0, transports=[{"transportId": f"{sfu_id}-tr", "internal": transport_internal}],
                      inbound_pads=inbound_pads, outbound_pads=outbound_pads)


def _pads(reports, report_type):
    return {p["rtpPadId"]: p for p in of_type(reports, report_type)}


async def test_sfu_inbound_pad_is_attributed_to_the_publisher() -> None:
    h = Harness()
    reports = await h.feed(received([_sfu_publisher()]),
                           received(sfu=[_sfu(inbound_pads=[{"transportId": "sfu-1-tr", "padId": "ip",
                                                             "streamId": "S1", "ssrc": 5}])]))
    pad = _pads(reports, ReportType.SFU_INBOUND_RTP_PAD)["ip"]
    (call_id,) = {p["callId"] for p in of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)}
    assert (pad["callId"], pad["clientId"], pad["trackId"]) == (call_id, "pub", "pub-out")


async def test_bug4_sfu_outbound_pad_reports_carry_the_subscriber() -> None:
    h = Harness()
    await h.feed(received([_sfu_subscriber()]))
    reports = await h.feed(received(sfu=[_sfu(
        inbound_pads=[{"transportId": "sfu-1-tr", "padId": "ip", "streamId": "OTHER", "ssrc": 9}],
        outbound_pads=[{"transportId": "sfu-1-tr", "padId": "op", "streamId": "S1", "sinkId": "K1", "ssrc": 6}])]))
    out_pad = _pads(reports, ReportType.SFU_OUTBOUND_RTP_PAD)["op"]
    assert (out_pad["clientId"], out_pad["trackId"]) == ("sub", "sub-in")
    assert out_pad["callId"] is not None
    # and nothing leaks into the unrelated inbound pad's report (the reference's depot mix-up)
    in_pad = _pads(reports, ReportType.SFU_INBOUND_RTP_PAD)["ip"]
    assert (in_pad["callId"], in_pad["clientId"], in_pad["trackId"]) == (None, None, None)
    stored = await h.repos.sfu_outbound_rtp_pads.get("op")
    assert stored is not None and stored.track is not None and stored.track.client_id == "sub"


async def test_internal_inbound_pad_matches_the_remote_sfus_outbound_pad_by_ssrc() -> None:
    h = Harness()
    sending = _sfu(sfu_id="sfu-A", transport_internal=True, outbound_pads=[
        {"transportId": "sfu-A-tr", "padId": "A-out", "streamId": "S1", "sinkId": "pipe-1", "ssrc": 77}])
    receiving = _sfu(sfu_id="sfu-B", transport_internal=True, inbound_pads=[
        {"transportId": "sfu-B-tr", "padId": "B-in", "streamId": "S1", "ssrc": 77}])
    await h.feed(received([_sfu_publisher()]), received(sfu=[sending]))
    reports = await h.feed(received(sfu=[receiving]))
    pad = _pads(reports, ReportType.SFU_INBOUND_RTP_PAD)["B-in"]
    assert (pad["remoteSfuId"], pad["remoteTransportId"], pad["remoteSinkId"], pad["remoteRtpPadId"]) == (
        "sfu-A", "sfu-A-tr", "pipe-1", "A-out")
    assert pad["clientId"] == "pub"


async def test_drop_unmatched_internal_inbound_reports() -> None:
    h = Harness(PipelineSettings(drop_unmatched_internal_inbound_reports=True))
    receiving = _sfu(sfu_id="sfu-B", transport_internal=True, inbound_pads=[
        {"transportId": "sfu-B-tr", "padId": "B-in", "streamId": "S1", "ssrc": 77}])
    reports = await h.feed(received(sfu=[receiving]))
    assert of_type(reports, ReportType.SFU_INBOUND_RTP_PAD) == []


async def test_bug10_drop_unmatched_inbound_and_outbound_pad_reports() -> None:
    h = Harness(PipelineSettings(drop_unmatched_inbound_reports=True, drop_unmatched_outbound_reports=True))
    sample = _sfu(
        inbound_pads=[{"transportId": "sfu-1-tr", "padId": "ip-known", "streamId": "S1", "ssrc": 5},
                      {"transportId": "sfu-1-tr", "padId": "ip-unknown", "streamId": "S9", "ssrc": 8}],
        outbound_pads=[{"transportId": "sfu-1-tr", "padId": "op-known", "streamId": "S1", "sinkId": "K1", "ssrc": 6},
                       {"transportId": "sfu-1-tr", "padId": "op-unknown", "streamId": "S1", "sinkId": "K9",
                        "ssrc": 9}])
    reports = await h.feed(received([_sfu_publisher(), _sfu_subscriber()]), received(sfu=[sample]))
    assert list(_pads(reports, ReportType.SFU_INBOUND_RTP_PAD)) == ["ip-known"]
    assert list(_pads(reports, ReportType.SFU_OUTBOUND_RTP_PAD)) == ["op-known"]
    assert h.pipeline.metrics.dropped.labels("unmatched_sfu_pad")._value.get() == 2
