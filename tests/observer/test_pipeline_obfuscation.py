"""Obfuscation before anything is stored or reported (spec/observer.md §2.6, never wired in by the reference)."""

from __future__ import annotations

import hashlib

import pytest

from observer.pipeline import ANONYMIZATION, ObfuscatorSettings, PipelineSettings
from observer.pipeline.obfuscation import make_hasher
from observer.reports.model import ReportType
from observer.repositories import room_key
from tests.observer.test_pipeline_support import (
    SERVICE,
    Harness,
    client_sample,
    events,
    of_type,
    received,
    sfu_sample,
    track,
)


def _digest(value: str, salt: str = "MySalt", algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, (value + salt).encode()).hexdigest()


def _sample():
    return client_sample(
        "alice", "secret-room", user_id="alice@example.com", pc_ids=["pc"],
        outbound_audio=[track("t", "pc", 1)],
        iceLocalCandidates=[{"peerConnectionId": "pc", "address": "10.0.0.1", "port": 5000}],
        iceRemoteCandidates=[{"peerConnectionId": "pc", "address": "192.0.2.7", "port": 6000}])


def _sfu():
    return sfu_sample("sfu-1", transports=[{"transportId": "tr", "localAddress": "10.1.1.1",
                                            "remoteAddress": "198.51.100.2"}])


def test_hash_is_the_hex_digest_of_value_and_salt() -> None:
    assert make_hasher("SHA-256", "MySalt")("x") == _digest("x")
    assert make_hasher("SHA-512", "s")("x") == _digest("x", "s", "sha512")
    with pytest.raises(ValueError):
        make_hasher("NO-SUCH-HASH", "s")


async def test_bug10_obfuscator_is_wired_in_and_hashes_ids_and_addresses() -> None:
    settings = PipelineSettings(obfuscator=ObfuscatorSettings(
        enabled=True, ice_addresses=ANONYMIZATION, room_id=ANONYMIZATION, user_id="ANONYMIZATION"))
    h = Harness(settings)
    reports = await h.feed(received([_sample()], [_sfu()]))
    hashed_room, hashed_user = _digest("secret-room"), _digest("alice@example.com")
    (joined,) = events(reports, "CLIENT_JOINED")
    assert (joined["roomId"], joined["userId"]) == (hashed_room, hashed_user)
    (outbound,) = of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)
    assert (outbound["roomId"], outbound["userId"]) == (hashed_room, hashed_user)
    metas = "".join(p["payload"] for p in of_type(reports, ReportType.CALL_META_DATA))
    assert "10.0.0.1" not in metas and "192.0.2.7" not in metas and _digest("10.0.0.1") in metas
    (transport,) = of_type(reports, ReportType.SFU_TRANSPORT)
    assert (transport["localAddress"], transport["remoteAddress"]) == (_digest("10.1.1.1"), _digest("198.51.100.2"))
    assert await h.repos.rooms.keys() == {room_key(SERVICE, hashed_room)}
    client = await h.repos.clients.get("alice")
    assert client is not None and client.user_id == hashed_user


async def test_none_method_and_disabled_obfuscator_keep_values() -> None:
    for obfuscator in (ObfuscatorSettings(enabled=True, room_id=ANONYMIZATION),
                       ObfuscatorSettings(enabled=False, room_id=ANONYMIZATION, user_id=ANONYMIZATION)):
        h = Harness(PipelineSettings(obfuscator=obfuscator))
        reports = await h.feed(received([_sample()]))
        (outbound,) = of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)
        assert outbound["userId"] == "alice@example.com"
        assert (outbound["roomId"] == "secret-room") is (not obfuscator.enabled)
