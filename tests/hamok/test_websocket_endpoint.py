"""WebsocketEndpoint over real sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hamok.errors import ClosedError
from hamok.transport import auth, wire
from hamok.transport.backoff import Backoff
from hamok.transport.websocket import PATH, WebsocketEndpoint

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """An EndpointListener that records everything."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.events: list[tuple[str, str]] = []

    def on_frame(self, source: str, data: bytes) -> None:
        self.frames.append((source, data))

    def on_peer_up(self, peer_id: str) -> None:
        self.events.append(("up", peer_id))

    def on_peer_down(self, peer_id: str) -> None:
        self.events.append(("down", peer_id))

    def ups(self, peer: str) -> int:
        return self.events.count(("up", peer))

    def downs(self, peer: str) -> int:
        return self.events.count(("down", peer))


async def eventually(condition: Callable[[], bool], within: float = 5.0, what: str = "condition") -> float:
    """Wait until condition() holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels or None)
    return value or 0.0


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    """make(id, **options) -> (endpoint, recorder, registry), started on an ephemeral port."""
    created: list[WebsocketEndpoint] = []

    async def factory(local_id: str, port: int = 0, **options: Any) -> tuple[WebsocketEndpoint, Recorder,
                                                                             CollectorRegistry]:
        registry = CollectorRegistry()
        endpoint = WebsocketEndpoint(local_id, "127.0.0.1", port, registry=registry, **options)
        recorder = Recorder()
        endpoint.set_listener(recorder)
        await endpoint.start()
        created.append(endpoint)
        return endpoint, recorder, registry

    yield factory
    await asyncio.gather(*(endpoint.stop() for endpoint in created))


def link(a: WebsocketEndpoint, b: WebsocketEndpoint) -> None:
    a.add_address(b.local_id, "127.0.0.1", b.port)


# ---------------------------------------------------------------------------- exchange


async def test_two_endpoints_exchange_frames_both_ways_with_real_byte_counts(make: Any) -> None:
    a, ra, rega = await make("a")
    b, rb, regb = await make("b")
    link(a, b)  # discovery on one side only is enough for a channel both ways
    await eventually(lambda: a.connected_peers == {"b"} and b.connected_peers == {"a"}, what="channel")
    assert ra.events == [("up", "b")] and rb.events == [("up", "a")]

    to_b = [os.urandom(n) for n in (0, 1, 100, 5000)]
    to_a = [b"pong-%d" % i for i in range(3)]
    assert all(a.send("b", f) for f in to_b)
    assert all(b.send("a", f) for f in to_a)
    await eventually(lambda: len(rb.frames) == 4 and len(ra.frames) == 3, what="frames")
    assert rb.frames == [("a", f) for f in to_b]
    assert ra.frames == [("b", f) for f in to_a]

    sent_a = sum(map(len, to_b))
    assert metric(rega, "hamok_transport_frames_sent_total") == 4
    assert metric(rega, "hamok_transport_bytes_sent_total") == sent_a
    assert metric(regb, "hamok_transport_frames_received_total") == 4
    assert metric(regb, "hamok_transport_bytes_received_total") == sent_a
    assert metric(regb, "hamok_transport_bytes_sent_total") == sum(map(len, to_a))
    assert metric(rega, "hamok_transport_peers_connected") == 1


async def test_three_endpoints_form_a_mesh_and_broadcast(make: Any) -> None:
    eps = [await make(name) for name in ("a", "b", "c")]
    for x, _, _ in eps:
        for y, _, _ in eps:
            if x is not y:
                link(x, y)
    await eventually(lambda: all(len(ep.connected_peers) == 2 for ep, _, _ in eps), what="mesh")
    for ep, _, _ in eps:
        ep.broadcast(b"from " + ep.local_id.encode())
    await eventually(lambda: all(len(rec.frames) == 2 for _, rec, _ in eps), what="broadcasts")
    for ep, rec, _ in eps:
        others = {x.local_id for x, _, _ in eps} - {ep.local_id}
        assert sorted(rec.frames) == sorted((o, b"from " + o.encode()) for o in others)
        assert sorted(rec.events) == sorted(("up", o) for o in others)


async def test_mutual_dialling_keeps_exactly_one_channel(make: Any) -> None:
    a, ra, rega = await make("a")
    b, rb, regb = await make("b")
    link(a, b)
    link(b, a)
    await eventually(lambda: a.connected_peers == {"b"} and b.connected_peers == {"a"}, what="channel")
    await asyncio.sleep(0.5)  # no flapping, no re-dialling once settled
    assert ra.events == [("up", "b")] and rb.events == [("up", "a")]
    open_connections = len(a._server.connections) + len(b._server.connections)
    assert open_connections == 1
    assert metric(rega, "hamok_transport_dial_attempts_total") == 1
    assert metric(regb, "hamok_transport_dial_attempts_total") == 1
    duplicates = metric(rega, "hamok_transport_connections_closed_total", reason="duplicate") + metric(
        regb, "hamok_transport_connections_closed_total", reason="duplicate"
    )
    assert duplicates >= 1
    # frames flow both ways over the surviving channel
    assert a.send("b", b"1") and b.send("a", b"2")
    await eventually(lambda: rb.frames == [("a", b"1")] and ra.frames == [("b", b"2")], what="frames")


async def test_large_frame_is_chunked_and_reassembled_byte_exact(make: Any) -> None:
    a, _, rega = await make("a", chunk_bytes=64 * 1024)
    b, rb, _ = await make("b", chunk_bytes=64 * 1024)
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    big = random.Random(7).randbytes(5 * 1024 * 1024 + 3)
    assert a.send("b", b"before") and a.send("b", big) and a.send("b", b"after")
    await eventually(lambda: len(rb.frames) == 3, within=15, what="5 MB frame")
    assert [f for _, f in rb.frames] == [b"before", big, b"after"]
    assert metric(rega, "hamok_transport_bytes_sent_total") == len(big) + 11


async def test_chunk_size_is_negotiated_down_to_the_smaller_side(make: Any) -> None:
    a, _, _ = await make("a", chunk_bytes=1024 * 1024)
    b, rb, _ = await make("b", chunk_bytes=4096)
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    payload = os.urandom(300_000)  # one 1 MiB message from a would exceed b's websocket max_size
    assert a.send("b", payload)
    await eventually(lambda: len(rb.frames) == 1, what="frame")
    assert rb.frames[0] == ("a", payload)
    assert b.connected_peers == {"a"}


async def test_order_is_preserved_over_10000_frames(make: Any) -> None:
    a, _, _ = await make("a", chunk_bytes=4096)
    b, rb, _ = await make("b", chunk_bytes=4096)
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    rng = random.Random(1)
    # mostly small frames (batched), some larger than a chunk (chunked), all interleaved
    frames = [struct.pack(">I", i) + rng.randbytes(rng.choice((0, 10, 200, 9000))) for i in range(10_000)]
    assert all(a.send("b", f) for f in frames)
    await eventually(lambda: len(rb.frames) == len(frames), within=20, what="10,000 frames")
    assert [f for _, f in rb.frames] == frames


# ---------------------------------------------------------------------------- peer loss and recovery


async def test_stopped_peer_goes_down_and_a_restart_reconnects_within_a_second(make: Any) -> None:
    a, ra, _ = await make("a")
    b, _, _ = await make("b")
    port_b = b.port
    link(a, b)
    link(b, a)
    await eventually(lambda: ra.ups("b") == 1, what="first up")
    await b.stop()
    await eventually(lambda: ra.downs("b") == 1, within=1.0, what="peer down")
    assert a.connected_peers == frozenset()
    assert not a.send("b", b"lost")

    b2, rb2, _ = await make("b", port=port_b)
    link(b2, a)
    took = await eventually(lambda: ra.ups("b") == 2, within=1.5, what="reconnect")
    assert took < 1.5
    assert a.send("b", b"again")
    await eventually(lambda: rb2.frames == [("a", b"again")], what="frame after restart")
    assert ra.events == [("up", "b"), ("down", "b"), ("up", "b")]


_CHILD = """
import asyncio, sys
from hamok.transport.websocket import WebsocketEndpoint

async def main():
    endpoint = WebsocketEndpoint("b", "127.0.0.1", 0)
    await endpoint.start()
    endpoint.add_address("a", "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.processes
async def test_sigkilled_peer_process_goes_down_at_once_and_its_restart_is_found(make: Any) -> None:
    a, ra, _ = await make("a")

    async def spawn() -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, str(a.port), stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 20) == b"ready\n"
        return child

    child = await spawn()
    try:
        await eventually(lambda: ra.ups("b") == 1, what="child up")
        child.kill()
        await child.wait()
        await eventually(lambda: ra.downs("b") == 1, within=1.0, what="down after SIGKILL")
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    child = await spawn()
    try:
        await eventually(lambda: ra.ups("b") == 2, within=1.0, what="restarted child up")
        assert a.send("b", b"hello again")
    finally:
        child.kill()
        await child.wait()


async def test_restarted_peer_replaces_a_channel_not_yet_noticed_dead(make: Any) -> None:
    a, ra, _ = await make("a")
    b1, rb1, _ = await make("b")
    link(b1, a)
    await eventually(lambda: a.connected_peers == {"b"}, what="first channel")
    # b restarts elsewhere while its old process is still (from a's view) connected
    await asyncio.sleep(0.002)  # a later start time
    b2, rb2, _ = await make("b")
    link(b2, a)
    await eventually(lambda: rb2.ups("a") == 1, what="new incarnation up")
    assert ra.events == [("up", "b"), ("down", "b"), ("up", "b")]
    await eventually(lambda: rb1.downs("a") == 1, what="old incarnation evicted")
    # the old process keeps redialling but never evicts the newer one
    await asyncio.sleep(0.6)
    assert ra.events == [("up", "b"), ("down", "b"), ("up", "b")]
    assert a.send("b", b"x")
    await eventually(lambda: rb2.frames == [("a", b"x")], what="frame to the new incarnation")
    assert rb1.frames == []


async def test_remove_address_stops_dialling_and_drops_the_dialled_channel(make: Any) -> None:
    a, ra, rega = await make("a", reconnect_base_ms=20, reconnect_max_ms=40)
    b, _, _ = await make("b")
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    a.remove_address("b")
    await eventually(lambda: ra.downs("b") == 1, what="down after removal")

    closed_port = b.port
    await b.stop()
    a.add_address("gone", "127.0.0.1", closed_port)
    await eventually(lambda: metric(rega, "hamok_transport_reconnect_attempts_total") >= 3, what="redials")
    a.remove_address("gone")
    await asyncio.sleep(0.05)
    attempts = metric(rega, "hamok_transport_dial_attempts_total")
    await asyncio.sleep(0.3)
    assert metric(rega, "hamok_transport_dial_attempts_total") == attempts


# ---------------------------------------------------------------------------- authentication


async def test_secret_mismatch_is_refused_and_counted(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hamok.transport.websocket")
    a, ra, rega = await make("a", secret="right", reconnect_base_ms=50, reconnect_max_ms=100)
    b, rb, regb = await make("b", secret="wrong")
    link(a, b)
    await eventually(lambda: metric(regb, "hamok_transport_auth_failures_total") >= 2
                     and metric(rega, "hamok_transport_connections_closed_total", reason="auth_refused") >= 2,
                     what="auth failures on b, refusals seen by a")
    assert ra.events == [] and rb.events == []
    assert not a.send("b", b"secret data") and not b.send("a", b"x")
    assert ra.frames == [] and rb.frames == []
    assert any("refusing connection with 127.0.0.1:" in r.getMessage() and "authentication failed" in
               r.getMessage() for r in caplog.records)


async def test_secret_on_one_side_only_is_refused_on_both(make: Any) -> None:
    a, ra, rega = await make("a", secret=b"s3cret")
    b, rb, regb = await make("b")
    link(b, a)
    await eventually(lambda: metric(rega, "hamok_transport_auth_failures_total") >= 1
                     and metric(regb, "hamok_transport_auth_failures_total") >= 1, what="refusals")
    assert ra.events == [] and rb.events == []


async def test_same_secret_authenticates(make: Any) -> None:
    a, ra, rega = await make("a", secret="shared")
    b, rb, regb = await make("b", secret=b"shared")
    link(a, b)
    link(b, a)
    await eventually(lambda: ra.ups("b") == 1 and rb.ups("a") == 1, what="authenticated channel")
    assert a.send("b", b"hi")
    await eventually(lambda: rb.frames == [("a", b"hi")], what="frame")
    assert metric(rega, "hamok_transport_auth_failures_total") == 0
    assert metric(regb, "hamok_transport_auth_failures_total") == 0


def test_auth_proof_is_bound_to_role_ids_and_nonces() -> None:
    def hello(peer: str) -> wire.Hello:
        return wire.Hello(peer, "inc-" + peer, 1, auth.new_nonce(), True, 4096, 4096, "h:1")

    x, y = hello("x"), hello("y")
    proof = auth.proof(b"k", auth.Role.DIALLER, x, y)
    assert auth.verify(b"k", auth.Role.DIALLER, x, y, proof)
    assert not auth.verify(b"k", auth.Role.LISTENER, x, y, proof)  # cannot be reflected as the other role
    assert not auth.verify(b"k", auth.Role.DIALLER, y, x, proof)
    assert not auth.verify(b"other", auth.Role.DIALLER, x, y, proof)
    assert not auth.verify(b"k", auth.Role.DIALLER, x, hello("y"), proof)  # fresh nonce, old proof
    with pytest.raises(ValueError, match="secret"):
        auth.normalize_secret("")


# ---------------------------------------------------------------------------- hostile input


async def _fake_peer(port: int) -> Any:
    return await connect(f"ws://127.0.0.1:{port}{PATH}", proxy=None, compression=None, max_size=None)


def _hello(peer_id: str) -> bytes:
    hello = wire.Hello(peer_id, "fake-inc", 1, auth.new_nonce(), False, 4096, 4096, "fake:1")
    return wire.encode_hello(hello)


async def _close_code(ws: Any) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def test_garbage_never_crashes_the_endpoint_or_other_connections(make: Any) -> None:
    a, ra, rega = await make("a", max_frame_bytes=100_000, chunk_bytes=4096, handshake_timeout_s=0.5)
    b, rb, _ = await make("b")
    link(b, a)
    await eventually(lambda: a.connected_peers == {"b"}, what="real peer")
    closed = "hamok_transport_connections_closed_total"

    # raw TCP garbage instead of an HTTP upgrade
    reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
    writer.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 10)
    await writer.drain()
    await asyncio.wait_for(reader.read(), 5)
    writer.close()

    # wrong path
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{a.port}/elsewhere", proxy=None)

    # a frame before the handshake
    ws = await _fake_peer(a.port)
    await ws.send(wire.encode_frames([b"sneaky"]))
    assert await _close_code(ws) == wire.CloseCode.MALFORMED

    # text instead of binary, and a HELLO that is not msgpack
    for bad in ("hello?", bytes([wire.Kind.HELLO]) + b"\xc1\xc1"):
        ws = await _fake_peer(a.port)
        await ws.send(bad)
        assert await _close_code(ws) == wire.CloseCode.MALFORMED

    # silence: handshake timeout
    ws = await _fake_peer(a.port)
    assert await _close_code(ws) == wire.CloseCode.HANDSHAKE_TIMEOUT

    # a peer claiming our own id
    ws = await _fake_peer(a.port)
    await ws.send(_hello("a"))
    assert await _close_code(ws) == wire.CloseCode.ID_REFUSED

    # after a valid handshake: a FRAMES entry overrunning its message
    ws = await _fake_peer(a.port)
    await ws.send(_hello("zz"))
    assert wire.decode_hello(await ws.recv()).peer_id == "a"
    wire.expect_accept(await ws.recv())  # "a" < "zz": a arbitrates and accepts
    await ws.send(wire.encode_frames([b"fine"]))
    await ws.send(bytes([wire.Kind.FRAMES]) + struct.pack(">I", 1000) + b"short")
    assert await _close_code(ws) == wire.CloseCode.MALFORMED

    # a chunked frame announcing more than max_frame_bytes
    ws = await _fake_peer(a.port)
    await ws.send(_hello("zz"))
    await ws.recv()
    await ws.recv()
    await ws.send(bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 10**9) + b"x" * 100)
    assert await _close_code(ws) == wire.CloseCode.TOO_LARGE

    # a websocket message above the negotiated size
    ws = await _fake_peer(a.port)
    await ws.send(_hello("zz"))
    await ws.recv()
    await ws.recv()
    await ws.send(wire.encode_frames([b"y" * 50_000]))
    assert await _close_code(ws) == 1009

    # only the one well-formed frame of the fake peer got through; the real peer is untouched
    assert [f for src, f in ra.frames if src == "zz"] == [b"fine"]
    assert a.connected_peers == {"b"} and ra.events.count(("down", "b")) == 0
    assert b.send("a", b"still here") and a.send("b", b"me too")
    await eventually(lambda: ("b", b"still here") in ra.frames and rb.frames == [("a", b"me too")],
                     what="both directions alive")
    assert metric(rega, closed, reason="malformed") == 4
    assert metric(rega, closed, reason="handshake_timeout") == 1
    assert metric(rega, closed, reason="id_refused") == 1
    assert metric(rega, closed, reason="too_large") == 2


async def test_peer_with_our_id_is_refused_and_own_address_is_not_redialled(make: Any) -> None:
    a, ra, rega = await make("a", reconnect_base_ms=20, reconnect_max_ms=40)
    twin, rt, _ = await make("a")
    link(twin, a)
    refused = "hamok_transport_connections_closed_total"
    await eventually(lambda: metric(rega, refused, reason="id_refused") >= 1, what="twin refused")
    assert ra.events == [] and rt.events == []
    await twin.stop()

    a.add_address("me", "127.0.0.1", a.port)
    await asyncio.sleep(0.3)
    assert metric(rega, "hamok_transport_connections_closed_total", reason="self") >= 1
    assert metric(rega, "hamok_transport_dial_attempts_total") == 1
    assert ra.events == []


# ---------------------------------------------------------------------------- send semantics


async def test_send_to_unknown_peer_returns_false_and_counts(make: Any) -> None:
    a, _, rega = await make("a")
    assert a.send("nobody", b"x") is False
    assert metric(rega, "hamok_transport_dropped_frames_total", reason="not_connected") == 1


async def test_full_queue_drops_and_counts_without_blocking(make: Any, monkeypatch: Any) -> None:
    # frames normally go straight to an idle socket; force them through the queue
    monkeypatch.setattr("hamok.transport.websocket._DIRECT_SEND_BUFFER_LIMIT", -1)
    a, _, rega = await make("a", send_queue_frames=10)
    b, rb, _ = await make("b")
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    results = [a.send("b", b"%d" % i) for i in range(100)]  # no await in between: the writer cannot drain
    assert results == [True] * 10 + [False] * 90
    assert metric(rega, "hamok_transport_dropped_frames_total", reason="queue_full") == 90
    await eventually(lambda: len(rb.frames) == 10, what="queued frames")
    await asyncio.sleep(0.05)
    assert [f for _, f in rb.frames] == [b"%d" % i for i in range(10)]
    assert a.send("b", b"after drain")


async def test_frame_larger_than_the_peer_accepts_is_refused_by_send(make: Any) -> None:
    a, _, rega = await make("a")
    b, _, _ = await make("b", max_frame_bytes=64 * 1024)
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    assert a.send("b", bytes(64 * 1024))
    assert not a.send("b", bytes(64 * 1024 + 1))
    assert metric(rega, "hamok_transport_dropped_frames_total", reason="too_large") == 1


async def test_listener_errors_are_counted_and_do_not_break_the_channel(make: Any) -> None:
    a, _, _ = await make("a")
    b, rb, regb = await make("b")
    original = rb.on_frame

    def flaky(source: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("listener bug")
        original(source, data)

    rb.on_frame = flaky
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    assert a.send("b", b"boom") and a.send("b", b"ok")
    await eventually(lambda: rb.frames == [("a", b"ok")], what="frame after the failing one")
    assert metric(regb, "hamok_transport_dropped_frames_total", reason="listener_error") == 1


async def test_stop_ends_everything_and_no_callback_fires_after_it(make: Any) -> None:
    a, ra, _ = await make("a")
    b, rb, _ = await make("b")
    link(a, b)
    await eventually(lambda: b.connected_peers == {"a"}, what="channel")
    for i in range(2000):
        a.send("b", b"%d" % i)
    await b.stop()
    seen = (len(rb.frames), list(rb.events))
    await asyncio.sleep(0.3)
    assert (len(rb.frames), rb.events) == seen
    assert ("down", "a") not in rb.events  # stop is not a peer loss to report
    await eventually(lambda: ra.downs("b") == 1, what="a sees b leave")
    assert not b.send("a", b"x")
    await b.stop()  # idempotent
    with pytest.raises(ClosedError):
        await b.start()
    assert not b._tasks  # every task it started has finished


def test_invalid_options_are_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="local_id"):
        WebsocketEndpoint("")
    with pytest.raises(ValueError, match="port"):
        WebsocketEndpoint("a", port=70000)
    with pytest.raises(ValueError, match="chunk_bytes"):
        WebsocketEndpoint("a", chunk_bytes=10)
    with pytest.raises(ValueError, match="reconnect_max_ms"):
        WebsocketEndpoint("a", reconnect_base_ms=100, reconnect_max_ms=50)
    endpoint = WebsocketEndpoint("a")
    with pytest.raises(ValueError, match="port"):
        endpoint.add_address("x", "127.0.0.1", 0)
    with pytest.raises(ValueError, match="host"):
        endpoint.add_address("x", "", 80)


# ---------------------------------------------------------------------------- units


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(0.1, 5.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(12)]
    nominal = [min(5.0, 0.1 * 2**i) for i in range(12)]
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal, strict=True))
    assert max(delays) <= 5.0
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.1


@pytest.mark.parametrize(
    "messages, error",
    [
        ([b""], "empty"),
        ([bytes([99])], "unknown kind"),
        ([bytes([wire.Kind.HELLO])], "HELLO message after the handshake"),
        ([bytes([wire.Kind.FRAMES])], "without a frame"),
        ([bytes([wire.Kind.FRAMES, 0, 0])], "inside a length prefix"),
        ([bytes([wire.Kind.CHUNK_NEXT]) + b"x"], "without CHUNK_FIRST"),
        ([bytes([wire.Kind.CHUNK_FIRST]) + b"\x00"], "shorter than its header"),
        ([bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 2) + b"abc"], "carries 3 bytes"),
        ([bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 5) + b"ab", wire.encode_frames([b"x"])],
         "incomplete"),
        ([bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 5) + b"ab",
          bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 5) + b"ab"], "incomplete"),
        ([bytes([wire.Kind.CHUNK_FIRST]) + struct.pack(">Q", 5) + b"ab",
          bytes([wire.Kind.CHUNK_NEXT]) + b"abcd"], "overrun"),
        (["text"], "text message"),
    ],
)
def test_reassembler_rejects_malformed_sequences(messages: list[Any], error: str) -> None:
    reassembler = wire.Reassembler(1000)
    with pytest.raises(wire.ProtocolViolation, match=error) as caught:
        for message in messages:
            reassembler.feed(message)
    assert caught.value.code == wire.CloseCode.MALFORMED


def test_chunks_round_trip_through_the_reassembler() -> None:
    frame = os.urandom(10_000)
    reassembler = wire.Reassembler(10_000)
    out: list[bytes] = []
    for message in wire.encode_chunks(frame, 1024):
        assert len(message) <= 1024 + wire.HEADER_ROOM
        out += reassembler.feed(message)
    assert out == [frame]
    assert reassembler.feed(wire.encode_frames([b"a", b"", b"bc"])) == [b"a", b"", b"bc"]
    with pytest.raises(wire.ProtocolViolation) as caught:
        wire.Reassembler(9_999).feed(next(wire.encode_chunks(frame, 1024)))
    assert caught.value.code == wire.CloseCode.TOO_LARGE


@pytest.mark.parametrize(
    "field, value",
    [("v", 2), ("id", ""), ("id", 5), ("inc", None), ("nonce", b"short"), ("chunk", 10), ("max_frame", "x"),
     ("auth", "yes"), ("t", -1)],
)
def test_hello_validation_names_the_field(field: str, value: Any) -> None:
    import msgpack

    body = msgpack.unpackb(_hello("p")[1:])
    body[field] = value
    with pytest.raises(wire.ProtocolViolation) as caught:
        wire.decode_hello(bytes([wire.Kind.HELLO]) + msgpack.packb(body))
    assert caught.value.code == wire.CloseCode.MALFORMED
    assert (field if field != "v" else "version") in caught.value.reason


# ---------------------------------------------------------------------------- throughput


async def _throughput(make: Any, size: int, seconds: float) -> tuple[float, float]:
    a, _, _ = await make(f"tp-a-{size}")
    b, _, regb = await make(f"tp-b-{size}")
    received = 0

    class Counting:
        def on_frame(self, source: str, data: bytes) -> None:
            nonlocal received
            received += 1

        def on_peer_up(self, peer_id: str) -> None:
            pass

        def on_peer_down(self, peer_id: str) -> None:
            pass

    b.set_listener(Counting())
    link(a, b)
    await eventually(lambda: a.connected_peers == {b.local_id}, what="channel")
    payload = os.urandom(size)
    window = max(8, min(2000, (4 * 1024 * 1024) // size))  # frames in flight, well under the queue bound
    sent = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        while sent - received < window:
            assert a.send(b.local_id, payload)
            sent += 1
        await asyncio.sleep(0)
    await eventually(lambda: received == sent, within=20, what="drain")
    elapsed = time.perf_counter() - started
    assert metric(regb, "hamok_transport_bytes_received_total") == sent * size
    return sent / elapsed, sent * size / elapsed / 1e6


async def test_throughput_on_loopback(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    small_fps, small_mbs = await _throughput(make, 100, 1.0)
    large_fps, large_mbs = await _throughput(make, 64 * 1024, 1.0)
    with capsys.disabled():
        print(f"\n[throughput] 100 B frames: {small_fps:,.0f} frames/s ({small_mbs:.1f} MB/s); "
              f"64 KiB frames: {large_fps:,.0f} frames/s ({large_mbs:.1f} MB/s)")
    # floors far below what loopback gives, to catch a collapse, not to benchmark the machine
    assert small_fps > 10_000
    assert large_mbs > 20


async def test_direct_and_queued_frames_keep_their_order(make: Any) -> None:
    """Small frames skip the writer task while the socket is idle; once frames queue (a big one
    is being written) the later small ones queue behind it, so order never changes."""
    a, _, _ = await make("a")
    b, rb, _ = await make("b")
    link(a, b)
    await eventually(lambda: a.connected_peers == {"b"}, what="channel")
    sent = []
    for i in range(200):
        frame = (b"%d:" % i) + (bytes(2 * 1024 * 1024) if i % 50 == 7 else b"")
        assert a.send("b", frame)
        sent.append(frame)
        if i % 10 == 0:
            await asyncio.sleep(0)
    await eventually(lambda: len(rb.frames) == 200, within=20, what="all frames")
    assert [f for _, f in rb.frames] == sent
