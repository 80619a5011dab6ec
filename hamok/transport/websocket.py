"""Hamok's network endpoint: one websocket port per process, one channel per peer pair.

Every process serves one port and dials every address discovery gives it, so two peers
usually end up with two connections. Only one becomes the channel: the peer with the
smaller id arbitrates, accepting the first connection of the pair (either direction)
and refusing any later one from the same peer incarnation with 4409. A connection from
a new incarnation (the peer restarted) replaces the old channel at once, without
waiting for a ping timeout to notice the dead one. The other side waits for ACCEPT
before using a connection, so both agree on the channel and frames are never split
across two connections.

A dialler whose connection was refused as a duplicate waits for the existing channel
to close and then redials, so a restarted peer is found again within one backoff base.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
import uuid
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode as WsCloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..errors import ClosedError
from . import auth, wire
from .backoff import Backoff
from .base import Endpoint
from .metrics import TransportMetrics

_LOG = logging.getLogger(__name__)
_PROTOCOL_LOG = logging.getLogger(__name__ + ".protocol")

PATH = "/hamok"
"""The HTTP path of the websocket; any other path gets 404."""


class _Outcome(enum.Enum):
    CHANNEL_CLOSED = enum.auto()   # the connection became the channel and later closed
    DUPLICATE = enum.auto()        # the pair already had a channel
    SELF = enum.auto()             # the address is this endpoint
    FAILED = enum.auto()           # handshake, authentication or protocol failure


class _SelfConnection(Exception):
    pass


class _Duplicate(Exception):
    pass


class _Stopping(Exception):
    pass


# a frame is written directly only while the socket's write buffer holds less than this
_DIRECT_SEND_BUFFER_LIMIT = 64 * 1024


@attrs.define(eq=False)
class _Channel:
    """The one accepted connection to a peer, with its outgoing queue."""

    peer_id: str
    incarnation: str
    started_ms: int
    conn: Connection
    address: str
    max_message: int
    """Frame data per websocket message: the smaller of both sides' chunk sizes."""
    max_frame: int
    """Largest frame the peer accepts."""
    queue: collections.deque[bytes] = attrs.field(factory=collections.deque)
    queued_bytes: int = 0
    wakeup: asyncio.Event = attrs.field(factory=asyncio.Event)
    closed: asyncio.Event = attrs.field(factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    closing: asyncio.Task[None] | None = None
    retired: bool = False
    overflowing: bool = False
    """A queue_full drop was logged; reset once the queue drains, so one episode logs once."""
    writing: bool = False
    """The writer task is inside ``conn.send`` (possibly waiting for the socket to drain)."""
    burst: bool = False
    """A frame went straight to the socket in this loop iteration; later ones queue."""


def _end_burst(channel: _Channel) -> None:
    channel.burst = False


@attrs.define(eq=False)
class _Dialler:
    address_id: str
    host: str
    port: int
    task: asyncio.Task[None] | None = None
    peer_id: str | None = None
    """Learned from the HELLO of the last connection to this address."""


def _address_of(conn: Connection) -> str:
    try:
        host, port = conn.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_positive(name: str, value: float, minimum: float = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


class WebsocketEndpoint(Endpoint):
    """Carries hamok frames between processes over websockets.

    ``host``/``port`` is where this process listens (port 0 picks a free one; see
    :attr:`port`). ``advertised_host`` is the host other peers reach us at; it only shows
    in their logs. With ``secret`` set, a peer must prove it knows the same secret before
    any frame is exchanged. Frames larger than ``chunk_bytes`` travel in chunks; frames
    larger than the receiving peer's ``max_frame_bytes`` are refused by :meth:`send`.
    A peer's outgoing queue holds at most ``send_queue_frames`` frames and
    ``send_queue_bytes`` bytes; beyond that :meth:`send` drops and returns False.
    """

    def __init__(
        self,
        local_id: str,
        host: str = "0.0.0.0",
        port: int = 5600,
        *,
        advertised_host: str | None = None,
        secret: bytes | str | None = None,
        max_frame_bytes: int = 64 * 1024 * 1024,
        chunk_bytes: int = 256 * 1024,
        send_queue_frames: int = 10_000,
        send_queue_bytes: int = 64 * 1024 * 1024,
        reconnect_base_ms: float = 100,
        reconnect_max_ms: float = 5_000,
        handshake_timeout_s: float = 5.0,
        ping_interval_s: float | None = 5.0,
        ping_timeout_s: float | None = 10.0,
        close_timeout_s: float = 2.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(local_id, str) or not local_id or len(local_id) > wire.MAX_ID_CHARS:
            raise ValueError(f"local_id must be a string of 1..{wire.MAX_ID_CHARS} chars, got {local_id!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        _check_positive("chunk_bytes", chunk_bytes, wire.MIN_CHUNK_BYTES)
        _check_positive("max_frame_bytes", max_frame_bytes, wire.MIN_CHUNK_BYTES)
        _check_positive("send_queue_frames", send_queue_frames)
        _check_positive("send_queue_bytes", send_queue_bytes)
        _check_positive("reconnect_base_ms", reconnect_base_ms)
        _check_positive("reconnect_max_ms", reconnect_max_ms, reconnect_base_ms)
        _check_positive("handshake_timeout_s", handshake_timeout_s, 0.001)
        super().__init__(local_id)
        self._host = host
        self._port = port
        self._advertised_host = advertised_host or host
        self._secret = auth.normalize_secret(secret)
        self._max_frame_bytes = int(max_frame_bytes)
        self._chunk_bytes = int(chunk_bytes)
        self._queue_frames = int(send_queue_frames)
        self._queue_bytes = int(send_queue_bytes)
        self._backoff_base_s = reconnect_base_ms / 1000
        self._backoff_cap_s = reconnect_max_ms / 1000
        self._handshake_timeout = handshake_timeout_s
        self._ws_options: dict[str, Any] = {
            "compression": None,  # raft and msgpack payloads gain little, and deflate costs CPU per frame
            "max_size": self._chunk_bytes + wire.HEADER_ROOM,
            "ping_interval": ping_interval_s,
            "ping_timeout": ping_timeout_s,
            "close_timeout": close_timeout_s,
            "open_timeout": handshake_timeout_s,
            "logger": _PROTOCOL_LOG,
        }
        self._incarnation = uuid.uuid4().hex
        self._started_ms = time.time_ns() // 1_000_000
        self._metrics = TransportMetrics.create(registry)
        self._server: Server | None = None
        self._channels: dict[str, _Channel] = {}
        self._diallers: dict[str, _Dialler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ public surface

    @property
    def port(self) -> int:
        """The port actually listened on (differs from the constructor's 0 once started)."""
        return self._port

    @property
    def advertised_address(self) -> str:
        return f"{self._advertised_host}:{self._port}"

    @property
    def metrics(self) -> TransportMetrics:
        return self._metrics

    @property
    def connected_peers(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def start(self) -> None:
        if self._stopping:
            raise ClosedError("this websocket endpoint was stopped; create a new one")
        if self._server is not None:
            return
        self._server = await serve(
            self._serve_connection,
            self._host,
            self._port,
            process_request=self._check_path,
            **self._ws_options,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        _LOG.info("hamok endpoint %s listening on %s:%d", self.local_id, self._host, self._port)
        for dialler in self._diallers.values():
            self._launch(dialler)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for dialler in self._diallers.values():
            if dialler.task is not None:
                dialler.task.cancel()
        for channel in list(self._channels.values()):
            self._retire(channel, WsCloseCode.GOING_AWAY, "endpoint stopping", "stopping")
        if self._server is not None:
            self._server.close()
        # cancelled diallers spawn their closing handshakes while they unwind, so drain until quiet
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._metrics.peers_connected.set(0)
        _LOG.info("hamok endpoint %s stopped", self.local_id)

    def send(self, destination: str, data: bytes) -> bool:
        channel = self._channels.get(destination)
        if channel is None or self._stopping:
            self._metrics.dropped_frames.labels("not_connected").inc()
            return False
        size = len(data)
        if size > channel.max_frame:
            self._metrics.dropped_frames.labels("too_large").inc()
            _LOG.warning(
                "frame of %d bytes to %s refused: the peer accepts at most %d",
                size, destination, channel.max_frame,
            )
            return False
        if len(channel.queue) >= self._queue_frames or channel.queued_bytes + size > self._queue_bytes:
            self._metrics.dropped_frames.labels("queue_full").inc()
            if not channel.overflowing:
                channel.overflowing = True
                _LOG.warning(
                    "send queue to %s is full (%d frames, %d bytes); dropping frames until it drains",
                    destination, len(channel.queue), channel.queued_bytes,
                )
            return False
        # direct only once the writer runs (until then the handshake's ACCEPT must go first), and
        # once per loop iteration: the rest of a burst queues and leaves in one batched message
        if (channel.writer is not None and not channel.queue and not channel.writing and not channel.burst
                and self._send_now(channel, data)):
            channel.burst = True
            asyncio.get_running_loop().call_soon(_end_burst, channel)
            return True
        channel.queue.append(data)
        channel.queued_bytes += size
        channel.wakeup.set()
        return True

    def _send_now(self, channel: _Channel, data: bytes) -> bool:
        """Write a small frame straight to the socket when nothing is queued ahead of it.

        Raft is latency bound: handing each frame to the writer task costs a loop iteration per
        hop. This does what ``conn.send`` does (frame it, write it) without awaiting, and only
        when the socket buffer is nearly empty, so flow control stays with the writer task.
        """
        conn = channel.conn
        size = len(data)
        if wire.frames_message_size(size) > channel.max_message or conn.protocol.state is not State.OPEN:
            return False
        transport = conn.transport
        if transport is None or transport.get_write_buffer_size() > _DIRECT_SEND_BUFFER_LIMIT:
            return False
        try:
            conn.protocol.send_binary(wire.encode_frames((data,)))
            conn.send_data()
        except Exception:  # the writer task path reports and handles a broken connection
            return False
        self._metrics.frames_sent.inc()
        self._metrics.bytes_sent.inc(size)
        return True

    def add_address(self, address_id: str, host: str, port: int) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"address {address_id!r}: host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"address {address_id!r}: port must be an integer in 1..65535, got {port!r}")
        if self._stopping:
            return
        current = self._diallers.get(address_id)
        if current is not None:
            if (current.host, current.port) == (host, port):
                return
            self._drop_dialler(current)
        dialler = _Dialler(address_id, host, port)
        self._diallers[address_id] = dialler
        if self._server is not None:
            self._launch(dialler)

    def remove_address(self, address_id: str) -> None:
        dialler = self._diallers.pop(address_id, None)
        if dialler is not None:
            self._drop_dialler(dialler)

    # ------------------------------------------------------------------ tasks and callbacks

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _launch(self, dialler: _Dialler) -> None:
        dialler.task = self._spawn(self._dial(dialler))

    def _drop_dialler(self, dialler: _Dialler) -> None:
        _LOG.info("no longer dialling %s (%s:%d)", dialler.address_id, dialler.host, dialler.port)
        if dialler.task is not None:
            dialler.task.cancel()

    def _notify_up(self, peer_id: str) -> None:
        if self._stopping or self._listener is None:
            return
        try:
            self._listener.on_peer_up(peer_id)
        except Exception:
            _LOG.exception("listener failed in on_peer_up(%s)", peer_id)

    def _notify_down(self, peer_id: str) -> None:
        if self._stopping or self._listener is None:
            return
        try:
            self._listener.on_peer_down(peer_id)
        except Exception:
            _LOG.exception("listener failed in on_peer_down(%s)", peer_id)

    def _deliver(self, peer_id: str, frames: list[bytes]) -> None:
        self._metrics.frames_received.inc(len(frames))
        self._metrics.bytes_received.inc(sum(map(len, frames)))
        for frame in frames:
            listener = self._listener
            if self._stopping:
                return
            if listener is None:
                self._metrics.dropped_frames.labels("no_listener").inc()
                continue
            try:
                listener.on_frame(peer_id, frame)
            except Exception:
                self._metrics.dropped_frames.labels("listener_error").inc()
                _LOG.exception("listener failed on a frame of %d bytes from %s", len(frame), peer_id)

    # ------------------------------------------------------------------ connections

    def _check_path(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != PATH:
            return conn.respond(HTTPStatus.NOT_FOUND, f"not a hamok endpoint; use {PATH}\n")
        return None

    async def _serve_connection(self, conn: ServerConnection) -> None:
        await self._run_connection(conn, None)

    async def _dial(self, dialler: _Dialler) -> None:
        backoff = Backoff(self._backoff_base_s, self._backoff_cap_s)
        uri = f"ws://{_uri_host(dialler.host)}:{dialler.port}{PATH}"
        where = f"{dialler.address_id} ({dialler.host}:{dialler.port})"
        first = True
        while True:
            self._metrics.dial_attempts.inc()
            if not first:
                self._metrics.reconnect_attempts.inc()
            first = False
            try:
                conn = await connect(uri, proxy=None, **self._ws_options)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, unresolvable, timed out, HTTP error: all mean "retry later"
                log = _LOG.info if backoff.attempt == 0 else _LOG.debug
                log("cannot reach %s: %s; retrying with backoff", where, exc or type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())
                continue
            try:
                outcome = await self._run_connection(conn, dialler)
            except asyncio.CancelledError:
                self._spawn(self._close(conn, WsCloseCode.GOING_AWAY, "address removed"))
                raise
            except Exception:
                # a bug must not end the dialler: this address would never be dialled again
                _LOG.exception("connection to %s failed unexpectedly", where)
                await self._close(conn, WsCloseCode.INTERNAL_ERROR, "internal error")
                outcome = _Outcome.FAILED
            if outcome is _Outcome.SELF:
                _LOG.info("%s is this endpoint itself; not dialling it again", where)
                return
            if outcome is _Outcome.CHANNEL_CLOSED:
                backoff.reset()
            elif outcome is _Outcome.DUPLICATE:
                channel = self._channels.get(dialler.peer_id) if dialler.peer_id else None
                if channel is not None:
                    await channel.closed.wait()
                    backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _run_connection(self, conn: Connection, dialler: _Dialler | None) -> _Outcome:
        address = _address_of(conn)
        try:
            async with asyncio.timeout(self._handshake_timeout):
                hello = await self._handshake(conn, dialled=dialler is not None)
                if dialler is not None:
                    dialler.peer_id = hello.peer_id
                channel = await self._arbitrate(conn, hello, address)
        except TimeoutError:
            await self._refuse(conn, address, wire.ProtocolViolation(
                wire.CloseCode.HANDSHAKE_TIMEOUT,
                f"handshake not completed within {self._handshake_timeout:g} s",
                "handshake_timeout",
            ))
            return _Outcome.FAILED
        except wire.ProtocolViolation as violation:
            if violation.metric == "auth_failed":
                self._metrics.auth_failures.inc()
            await self._refuse(conn, address, violation)
            return _Outcome.FAILED
        except _SelfConnection:
            self._metrics.connections_closed.labels("self").inc()
            await self._close(conn, wire.CloseCode.ID_REFUSED, "connected to itself")
            return _Outcome.SELF
        except _Duplicate as duplicate:
            self._metrics.connections_closed.labels("duplicate").inc()
            await self._close(conn, wire.CloseCode.DUPLICATE, str(duplicate))
            return _Outcome.DUPLICATE
        except _Stopping:
            await self._close(conn, WsCloseCode.GOING_AWAY, "endpoint stopping")
            return _Outcome.FAILED
        except ConnectionClosed as closed:
            return self._closed_in_handshake(closed, address)
        await self._read(channel)
        return _Outcome.CHANNEL_CLOSED

    async def _handshake(self, conn: Connection, *, dialled: bool) -> wire.Hello:
        mine = wire.Hello(
            peer_id=self.local_id,
            incarnation=self._incarnation,
            started_ms=self._started_ms,
            nonce=auth.new_nonce(),
            auth=self._secret is not None,
            chunk_bytes=self._chunk_bytes,
            max_frame_bytes=self._max_frame_bytes,
            address=self.advertised_address,
        )
        await conn.send(wire.encode_hello(mine))
        theirs = wire.decode_hello(await conn.recv())
        if theirs.peer_id == self.local_id:
            if theirs.incarnation == self._incarnation:
                raise _SelfConnection
            raise wire.ProtocolViolation(
                wire.CloseCode.ID_REFUSED,
                wire.close_reason(f"peer id {theirs.peer_id!r} is this endpoint's own id"),
                "id_refused",
            )
        secret = self._secret
        if secret is None:
            if theirs.auth:
                raise _auth_failed("peer requires a shared secret but none is configured here")
            return theirs
        if not theirs.auth:
            raise _auth_failed("authentication required but the peer has no shared secret configured")
        if dialled:
            await conn.send(wire.encode_auth(auth.proof(secret, auth.Role.DIALLER, mine, theirs)))
            if not auth.verify(secret, auth.Role.LISTENER, theirs, mine, wire.decode_auth(await conn.recv())):
                raise _auth_failed("authentication failed: wrong proof of the shared secret")
        else:
            if not auth.verify(secret, auth.Role.DIALLER, theirs, mine, wire.decode_auth(await conn.recv())):
                raise _auth_failed("authentication failed: wrong proof of the shared secret")
            await conn.send(wire.encode_auth(auth.proof(secret, auth.Role.LISTENER, mine, theirs)))
        return theirs

    async def _arbitrate(self, conn: Connection, hello: wire.Hello, address: str) -> _Channel:
        if self.local_id < hello.peer_id:
            existing = self._channels.get(hello.peer_id)
            if existing is not None and existing.incarnation == hello.incarnation:
                raise _Duplicate(
                    f"duplicate connection: {self.local_id} already has a channel with {hello.peer_id}"
                )
            channel = self._install(conn, hello, address)
            try:
                await conn.send(wire.ACCEPT)
            except BaseException:
                self._retire(channel, WsCloseCode.GOING_AWAY, "handshake aborted", "handshake_aborted")
                raise
        else:
            wire.expect_accept(await conn.recv())
            channel = self._install(conn, hello, address)
        channel.writer = self._spawn(self._write(channel))
        return channel

    def _install(self, conn: Connection, hello: wire.Hello, address: str) -> _Channel:
        if self._stopping:
            raise _Stopping
        existing = self._channels.get(hello.peer_id)
        if existing is not None:
            if (hello.started_ms, hello.incarnation) < (existing.started_ms, existing.incarnation):
                # two live processes share one id; keeping the later one stops them from evicting
                # each other forever (a restarted process always starts later than its old self)
                raise wire.ProtocolViolation(
                    wire.CloseCode.ID_REFUSED,
                    f"an instance of {hello.peer_id!r} that started later is already connected",
                    "id_refused",
                )
            self._retire(existing, wire.CloseCode.REPLACED, "replaced by a newer connection", "replaced")
        channel = _Channel(
            peer_id=hello.peer_id,
            incarnation=hello.incarnation,
            started_ms=hello.started_ms,
            conn=conn,
            address=address,
            max_message=min(self._chunk_bytes, hello.chunk_bytes),
            max_frame=hello.max_frame_bytes,
        )
        self._channels[hello.peer_id] = channel
        self._metrics.peers_connected.set(len(self._channels))
        _LOG.info("peer %s up via %s (advertises %s)", hello.peer_id, address, hello.address)
        self._notify_up(hello.peer_id)
        return channel

    def _retire(self, channel: _Channel, code: int, reason: str, metric: str) -> None:
        """Take a channel out of service (idempotent): peer down, queue dropped, connection closing."""
        if channel.retired:
            return
        channel.retired = True
        channel.closed.set()
        if channel.writer is not None:
            channel.writer.cancel()
        if channel.queue:
            self._metrics.dropped_frames.labels("peer_down").inc(len(channel.queue))
            channel.queue.clear()
            channel.queued_bytes = 0
        self._metrics.connections_closed.labels(metric).inc()
        del self._channels[channel.peer_id]
        self._metrics.peers_connected.set(len(self._channels))
        _LOG.info("peer %s down (%s): %s", channel.peer_id, channel.address, metric)
        self._notify_down(channel.peer_id)
        channel.closing = self._spawn(self._close(channel.conn, code, reason))

    async def _read(self, channel: _Channel) -> None:
        reassembler = wire.Reassembler(self._max_frame_bytes)
        code: int = WsCloseCode.NORMAL_CLOSURE
        reason, metric = "", "peer_closed"
        try:
            async for message in channel.conn:
                try:
                    frames = reassembler.feed(message)
                except wire.ProtocolViolation as violation:
                    _LOG.warning(
                        "closing the channel with %s (%s): %s",
                        channel.peer_id, channel.address, violation.reason,
                    )
                    code, reason, metric = violation.code, violation.reason, violation.metric
                    break
                if frames:
                    self._deliver(channel.peer_id, frames)
        except ConnectionClosed as closed:
            metric = _lost_metric(closed)
            if not channel.retired and metric != "connection_lost":
                _LOG.warning("channel with %s (%s) closed: %s", channel.peer_id, channel.address, closed)
        finally:
            self._retire(channel, code, reason, metric)
            # a server handler that returns makes websockets close with 1000 at once; our code must go first
            if channel.closing is not None:
                await channel.closing

    async def _write(self, channel: _Channel) -> None:
        queue = channel.queue
        limit = channel.max_message
        in_flight = 0
        try:
            while True:
                if not queue:
                    channel.overflowing = False
                    channel.wakeup.clear()
                    await channel.wakeup.wait()
                    continue
                batch = [queue.popleft()]
                size = len(batch[0])
                used = wire.frames_message_size(size)
                if used > limit:
                    messages: Any = wire.encode_chunks(batch[0], limit)
                else:
                    # everything already queued that fits rides in the same message: no added latency
                    while queue and used + wire.frames_message_size(len(queue[0])) <= limit:
                        frame = queue.popleft()
                        batch.append(frame)
                        size += len(frame)
                        used += wire.frames_message_size(len(frame))
                    messages = (wire.encode_frames(batch),)
                channel.queued_bytes -= size
                in_flight = len(batch)
                channel.writing = True
                try:
                    for message in messages:
                        await channel.conn.send(message)
                finally:
                    channel.writing = False
                in_flight = 0
                self._metrics.frames_sent.inc(len(batch))
                self._metrics.bytes_sent.inc(size)
        except ConnectionClosed:
            # the reader sees the same close and retires the channel
            self._metrics.dropped_frames.labels("peer_down").inc(in_flight)
        except asyncio.CancelledError:
            self._metrics.dropped_frames.labels("peer_down").inc(in_flight)
            raise
        except Exception:
            _LOG.exception("writer to %s failed", channel.peer_id)
            self._metrics.dropped_frames.labels("peer_down").inc(in_flight)
            self._retire(channel, WsCloseCode.INTERNAL_ERROR, "internal error", "error")

    async def _refuse(self, conn: Connection, address: str, violation: wire.ProtocolViolation) -> None:
        self._metrics.connections_closed.labels(violation.metric).inc()
        _LOG.warning("refusing connection with %s: %d %s", address, violation.code, violation.reason)
        await self._close(conn, violation.code, violation.reason)

    def _closed_in_handshake(self, closed: ConnectionClosed, address: str) -> _Outcome:
        code = closed.rcvd.code if closed.rcvd is not None else None
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        if code == wire.CloseCode.DUPLICATE:
            self._metrics.connections_closed.labels("duplicate").inc()
            return _Outcome.DUPLICATE
        if code == wire.CloseCode.AUTH_FAILED:
            self._metrics.connections_closed.labels("auth_refused").inc()
            _LOG.warning("peer at %s refused our authentication: %s", address, reason)
        elif code == wire.CloseCode.ID_REFUSED:
            self._metrics.connections_closed.labels("id_refused").inc()
            _LOG.warning("peer at %s refused our id %r: %s", address, self.local_id, reason)
        else:
            self._metrics.connections_closed.labels("handshake_aborted").inc()
            _LOG.debug("connection with %s closed during the handshake: %s", address, closed)
        return _Outcome.FAILED

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        try:
            await conn.close(code, wire.close_reason(reason))
        except Exception as exc:  # closing is best effort; the transport is torn down either way
            _LOG.debug("closing %s: %s", _address_of(conn), exc)


def _auth_failed(reason: str) -> wire.ProtocolViolation:
    return wire.ProtocolViolation(wire.CloseCode.AUTH_FAILED, reason, "auth_failed")


def _lost_metric(closed: ConnectionClosed) -> str:
    if closed.sent is not None and closed.sent.code == WsCloseCode.MESSAGE_TOO_BIG:
        return "too_large"
    if closed.rcvd is not None and closed.rcvd.code == WsCloseCode.MESSAGE_TOO_BIG:
        return "too_large_for_peer"
    if closed.rcvd is not None and closed.rcvd.code in wire.CloseCode._value2member_map_:
        return f"peer_{wire.CloseCode(closed.rcvd.code).name.lower()}"
    return "connection_lost"
