"""StorageGrid: one per process. Routes messages between its storages and its peers, runs
Raft for the replicated storages, and keeps the cluster together.

Cluster formation, one rule for every start: a grid starts as a single-node cluster and is
its own leader at once. When two grids of different clusters meet (discovery connected
them), the younger cluster dissolves into the older one (older = earlier creation time,
ties broken by cluster id): each of its members drops its raft state, asks the older
cluster's leader to add it, catches up from the log or a snapshot, and then re-inserts
the replicated entries it held, so the cluster's value wins on every conflict. This covers
daemons started together from a static peer list, pods appearing one by one, a node that
ran alone and then finds a cluster, a restarted node, and two groups that formed apart
during a partition. The leader removes members it has not been connected to for
``peer_max_idle_ms``; a member connected to nobody for that long becomes a standalone
cluster again (``standalone_when_isolated``), so the last survivor keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ._support import BackgroundTasks
from .config import GridConfig
from .errors import ClosedError, DecodeError, HamokTimeoutError, NoLeaderError
from .messages import Message, MessageType, decode, encode, is_response
from .raft.node import RETRYABLE_FAILURES, SUCCESS, RaftNode
from .raft.state_machine import CMD_CLUSTER, CMD_NOOP, CMD_STORAGE, GridStateMachine, encode_command
from .transport.base import Endpoint

logger = logging.getLogger(__name__)

Listener = Callable[..., None]


def _now_ms() -> int:
    return int(time.time() * 1000)


class StorageEndpoint(Protocol):
    """What a storage registers with the grid to receive its messages."""

    async def on_request(self, message: Message) -> Message | None:
        """Answer a request from a peer (None: no answer)."""

    def on_notification(self, message: Message) -> None:
        """A fire-and-forget message from a peer."""


class GridEvents:
    """Synchronous callbacks for membership and leadership changes."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        """Events: ``peer_joined(peer)``, ``peer_detached(peer)``, ``leader_changed(leader|None)``,
        ``not_responding(peers)``, ``cluster_changed(cluster_id)``."""
        self._listeners.setdefault(event, []).append(listener)
        return lambda: self._listeners[event].remove(listener)

    def emit(self, event: str, *args: Any) -> None:
        for listener in tuple(self._listeners.get(event, ())):
            try:
                listener(*args)
            except Exception:
                logger.exception("grid event listener for %s failed", event)


class _PendingRequest:
    __slots__ = ("chunks", "done", "expected", "future", "responses")

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.responses: dict[str, Message] = {}
        self.chunks: dict[str, dict[int, Message]] = {}
        self.done: set[str] = set()
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, message: Message) -> None:
        source = message.source
        if source in self.done or source not in self.expected:
            return
        parts = self.chunks.setdefault(source, {})
        parts[message.sequence] = message
        last = next((m.sequence for m in parts.values() if m.last), None)
        if last is None or len(parts) < last + 1:
            return
        ordered = [parts[i] for i in range(last + 1)]
        merged = ordered[0]
        for part in ordered[1:]:
            merged.keys.extend(part.keys)
            merged.values.extend(part.values)
        self.responses[source] = merged
        self.chunks.pop(source, None)
        self._finish(source)

    def remove_peer(self, peer: str) -> None:
        if peer in self.expected and peer not in self.done:
            self._finish(peer)

    def _finish(self, peer: str) -> None:
        self.done.add(peer)
        if self.done >= self.expected and not self.future.done():
            self.future.set_result(None)


class _GridMetrics:
    def __init__(self, grid: StorageGrid, registry: CollectorRegistry | None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.messages_sent = Counter("hamok_messages_sent", "Messages sent to peers", ["type"], registry=reg)
        self.messages_received = Counter("hamok_messages_received", "Messages received", ["type"], registry=reg)
        self.bytes_sent = Counter("hamok_bytes_sent", "Bytes of messages sent to peers", registry=reg)
        self.bytes_received = Counter("hamok_bytes_received", "Bytes of messages received", registry=reg)
        self.decode_errors = Counter("hamok_decode_errors", "Frames that could not be decoded", registry=reg)
        self.request_timeouts = Counter("hamok_request_timeouts", "Storage requests that timed out",
                                        registry=reg)
        self.submit_retries = Counter("hamok_submit_retries", "Replicated writes re-submitted", registry=reg)
        self.merges = Counter("hamok_cluster_merges", "Times this node dissolved into another cluster",
                              registry=reg)
        Gauge("hamok_pending_requests", "Storage requests waiting for responses",
              registry=reg).set_function(lambda: len(grid._pending))
        Gauge("hamok_pending_submits", "Replicated writes waiting for commit",
              registry=reg).set_function(lambda: grid._inflight_submits)
        Gauge("hamok_remote_peers", "Connected remote peers",
              registry=reg).set_function(lambda: len(grid.remote_peers))
        Gauge("hamok_raft_members", "Members of this node's raft group",
              registry=reg).set_function(lambda: len(grid.members))
        Gauge("hamok_is_leader", "1 if this node is the raft leader",
              registry=reg).set_function(lambda: 1 if grid.is_leader else 0)
        Gauge("hamok_raft_term", "Current raft term", registry=reg).set_function(lambda: grid.raft.term)
        Gauge("hamok_raft_commit_index", "Raft commit index",
              registry=reg).set_function(lambda: grid.raft.commit_index)
        Gauge("hamok_raft_log_size", "Raft log entries retained",
              registry=reg).set_function(lambda: grid.raft.log_size)
        reg.register(_StorageSizes(grid))
        # labelled children resolved once per message type: labels() is costly on the raft hot path
        self._sent_children: dict[MessageType, Any] = {}
        self._received_children: dict[MessageType, Any] = {}

    def sent(self, mtype: MessageType, size: int) -> None:
        child = self._sent_children.get(mtype)
        if child is None:
            child = self._sent_children[mtype] = self.messages_sent.labels(mtype.name)
        child.inc()
        self.bytes_sent.inc(size)

    def received(self, mtype: MessageType, size: int) -> None:
        child = self._received_children.get(mtype)
        if child is None:
            child = self._received_children[mtype] = self.messages_received.labels(mtype.name)
        child.inc()
        self.bytes_received.inc(size)


class _StorageSizes(Collector):
    """``hamok_storage_local_entries{storage}``: read from the storages at scrape time."""

    def __init__(self, grid: StorageGrid) -> None:
        self._grid = grid

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("hamok_storage_local_entries", "Entries held locally per storage",
                                   labels=["storage"])
        for storage_id, storage in self._grid._storages.items():
            local = getattr(storage, "local", storage)       # a replicated storage keeps a MemoryStorage
            size = getattr(local, "local_size", None)
            if callable(size):
                family.add_metric([storage_id], float(size()))
        yield family


class StorageGrid:
    """One member of a hamok grid. Create it, register storages, ``await start()``."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: GridConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        raft_safety_fix: bool = True,
    ) -> None:
        self.config = config or GridConfig(local_id=endpoint.local_id)
        if self.config.local_id != endpoint.local_id:
            raise ValueError("the endpoint's local_id must equal the grid's local_id")
        self.local_id = self.config.local_id
        self.endpoint = endpoint
        self.events = GridEvents()
        self._storages: dict[str, StorageEndpoint] = {}
        self._pending: dict[str, _PendingRequest] = {}
        self._submits: dict[str, asyncio.Future[Any]] = {}
        self._inflight_submits = 0
        self._raft_safety_fix = raft_safety_fix
        self.machine = GridStateMachine()
        self.machine.on_cluster_changed = self._on_cluster_changed
        self._tick_scheduled = False
        self._last_maintenance = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks = BackgroundTasks(logger, f"hamok grid {self.local_id}")
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._started = False
        self._last_leader: str | None = None
        self._peer_hello: dict[str, dict[str, Any]] = {}
        self._disconnected_since: dict[str, float] = {}
        self._isolated_since: float | None = None
        self._joining: dict[str, Any] | None = None      # winner cluster info while joining it
        self._merge_backlog: dict[str, tuple[list[bytes], list[bytes]]] = {}
        self._last_hello = 0.0
        self._last_join_attempt = 0.0
        self._removing: set[str] = set()
        self._cluster_init_sent = False
        self.metrics = _GridMetrics(self, registry)
        self.raft = self._new_raft([])
        endpoint.set_listener(self)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        await self.endpoint.start()
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"hamok-grid-{self.local_id}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._tasks.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        for fut in self._submits.values():
            if not fut.done():
                fut.set_exception(ClosedError("grid closed"))
        await self.endpoint.stop()
        self.raft.destroy()

    async def __aenter__(self) -> StorageGrid:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    # ------------------------------------------------------------------ state
    @property
    def remote_peers(self) -> frozenset[str]:
        """Peers connected at the transport level (separated storages talk to all of them)."""
        return self.endpoint.connected_peers

    @property
    def members(self) -> frozenset[str]:
        """This node's raft group (itself included)."""
        return self.raft.members

    @property
    def leader_id(self) -> str | None:
        return self.raft.leader_id

    @property
    def is_leader(self) -> bool:
        return self.raft.is_leader

    @property
    def cluster_id(self) -> str | None:
        return self.machine.cluster[0] if self.machine.cluster else None

    @property
    def joining(self) -> bool:
        return self._joining is not None

    def _new_raft(self, members: Iterable[str]) -> RaftNode:
        cfg = self.config
        node = RaftNode(
            self.local_id,
            members,
            self.machine,
            self._send_raft,
            heartbeat_ms=cfg.heartbeat_ms,
            election_timeout_ms=cfg.follower_max_idle_ms,
            log_compaction_min_entries=cfg.log_compaction_min_entries,
            log_retention_ms=cfg.log_retention_ms,
            safety_fix=self._raft_safety_fix,
        )
        for peer in self.endpoint.connected_peers:
            node.peer_up(peer)
        return node

    # ------------------------------------------------------------------ storages
    def register_storage(self, storage_id: str, storage: StorageEndpoint) -> None:
        if storage_id in self._storages:
            raise ValueError(f"a storage with id {storage_id!r} is already registered")
        self._storages[storage_id] = storage

    def unregister_storage(self, storage_id: str) -> None:
        self._storages.pop(storage_id, None)
        self.machine.storages.pop(storage_id, None)

    def replicated_storage(self, storage_id: str, **kwargs: Any) -> Any:
        from .storages.replicated import ReplicatedStorage

        return ReplicatedStorage(self, storage_id, **kwargs)

    def separated_storage(self, storage_id: str, **kwargs: Any) -> Any:
        from .storages.separated import SeparatedStorage

        return SeparatedStorage(self, storage_id, **kwargs)

    # ------------------------------------------------------------------ sending
    def _send_frame(self, destination: str, message: Message) -> bool:
        message.source = self.local_id
        data = encode(message)
        ok = self.endpoint.send(destination, data)
        if ok:
            self.metrics.sent(message.type, len(data))
        return ok

    def _send_raft(self, destination: str, payload: dict[str, Any]) -> bool:
        return self._send_frame(destination, Message(MessageType.RAFT, payload=payload))

    def notify(self, message: Message, destination: str | None = None) -> None:
        """Fire-and-forget to one peer, or to every connected peer."""
        targets = [destination] if destination is not None else list(self.remote_peers)
        for peer in targets:
            self._send_frame(peer, Message(**_fields(message)))

    def respond(self, request: Message, response: Message) -> None:
        """Send ``response`` back to ``request.source``, split into chunks of max_message_keys."""
        response.destination = request.source
        response.request_id = request.request_id
        response.storage_id = request.storage_id
        limit = self.config.max_message_keys
        if len(response.keys) <= limit:
            self._send_frame(request.source, response)
            return
        total = (len(response.keys) + limit - 1) // limit
        for seq in range(total):
            lo, hi = seq * limit, (seq + 1) * limit
            chunk = Message(**_fields(response))
            chunk.keys = response.keys[lo:hi]
            chunk.values = response.values[lo:hi] if response.values else []
            chunk.sequence, chunk.last = seq, seq == total - 1
            self._send_frame(request.source, chunk)

    async def request(
        self,
        message: Message,
        destinations: Iterable[str] | None = None,
        *,
        timeout_ms: int | None = None,
        raise_on_timeout: bool | None = None,
    ) -> list[Message]:
        """Send a request to peers (default: all connected) and gather one assembled response per
        peer. A peer that disconnects stops being waited for; a peer that lacks the storage
        answers at once. On timeout: the partial responses, or HamokTimeoutError."""
        if self._closed:
            raise ClosedError("grid closed")
        targets = set(self.remote_peers if destinations is None else destinations) - {self.local_id}
        targets &= self.remote_peers
        if not targets:
            return []
        request_id = uuid.uuid4().hex
        pending = _PendingRequest(targets)
        self._pending[request_id] = pending
        try:
            for peer in targets:
                out = Message(**_fields(message))
                out.request_id, out.destination = request_id, peer
                if not self._send_frame(peer, out):
                    pending.remove_peer(peer)
            timeout = (timeout_ms or self.config.request_timeout_ms) / 1000
            try:
                await asyncio.wait_for(asyncio.shield(pending.future), timeout)
            except TimeoutError:
                missing = sorted(pending.expected - pending.done)
                self.metrics.request_timeouts.inc()
                self.events.emit("not_responding", missing)
                throw = self.config.throw_on_request_timeout if raise_on_timeout is None else raise_on_timeout
                if throw:
                    raise HamokTimeoutError(
                        f"{message.type.name} on {message.storage_id}: no response from {missing}"
                    ) from None
                logger.warning("%s on %s timed out waiting for %s; using partial responses",
                               message.type.name, message.storage_id, missing)
            return [r for r in pending.responses.values() if r.type != MessageType.NO_STORAGE_RESPONSE]
        finally:
            self._pending.pop(request_id, None)

    # ------------------------------------------------------------------ replicated writes
    async def submit(self, storage_id: str, op: int, keys: list[bytes], values: list[bytes],
                     *, timeout_ms: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Append a storage command to the raft log and return its result once applied here."""
        request_id = uuid.uuid4().hex
        command = encode_command(CMD_STORAGE, storage_id, self.local_id, request_id, op, keys, values,
                                 _now_ms())
        result = await self._submit_command(command, timeout_ms)
        return (result[0], result[1])

    async def sync(self, timeout_ms: int | None = None) -> None:
        """Read barrier: returns once every write committed before the call is applied here."""
        await self._submit_command(encode_command(CMD_NOOP), timeout_ms)

    async def _submit_command(self, command: bytes, timeout_ms: int | None) -> Any:
        if self._closed:
            raise ClosedError("grid closed")
        deadline = time.monotonic() + (timeout_ms or self.config.request_timeout_ms) / 1000
        self._inflight_submits += 1
        try:
            attempt = 0
            while True:
                attempt += 1
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[Any] = loop.create_future()
                key = uuid.uuid4().hex
                self._submits[key] = fut

                def callback(result: Any, error: int, fut: asyncio.Future[Any] = fut) -> None:
                    if fut.done():
                        return
                    if error == SUCCESS:
                        fut.set_result(result)
                    else:
                        fut.set_exception(_SubmitFailed(error))

                # the raft node may be replaced (merge); an attempt waits at most a few election
                # timeouts before the same command (same request id: applied once) is re-submitted
                self.raft.submit(command, callback)
                self._request_tick()
                remaining = deadline - time.monotonic()
                attempt_timeout = min(remaining, max(1.0, self.config.follower_max_idle_ms * 4 / 1000))
                try:
                    return await asyncio.wait_for(fut, attempt_timeout)
                except (_SubmitFailed, TimeoutError) as exc:
                    code = exc.code if isinstance(exc, _SubmitFailed) else None
                    if code is not None and code != _RAFT_REPLACED and code not in RETRYABLE_FAILURES:
                        raise
                    if time.monotonic() >= deadline:
                        if self.leader_id is None:
                            limit = timeout_ms or self.config.request_timeout_ms
                            raise NoLeaderError(f"no raft leader within {limit} ms") from None
                        raise HamokTimeoutError("replicated write not committed in time") from None
                    self.metrics.submit_retries.inc()
                    await asyncio.sleep(min(0.05 * attempt, 0.3, max(0.0, deadline - time.monotonic())))
                finally:
                    self._submits.pop(key, None)
        finally:
            self._inflight_submits -= 1

    def _fail_submits(self) -> None:
        for fut in list(self._submits.values()):
            if not fut.done():
                fut.set_exception(_SubmitFailed(_RAFT_REPLACED))

    # ------------------------------------------------------------------ endpoint listener
    def on_frame(self, source: str, data: bytes) -> None:
        try:
            message = decode(data)
        except DecodeError as exc:
            self.metrics.decode_errors.inc()
            logger.warning("dropped undecodable frame from %s: %s", source, exc)
            return
        message.source = source  # the transport authenticated the peer; the envelope cannot lie
        self.metrics.received(message.type, len(data))
        try:
            self._dispatch(message)
        except Exception:
            logger.exception("failed to handle %s from %s", message.type.name, source)

    def on_peer_up(self, peer_id: str) -> None:
        self._disconnected_since.pop(peer_id, None)
        self.raft.peer_up(peer_id)
        self._send_hello(peer_id)
        self.events.emit("peer_joined", peer_id)
        self._request_tick()

    def on_peer_down(self, peer_id: str) -> None:
        self._disconnected_since[peer_id] = time.monotonic()
        self._peer_hello.pop(peer_id, None)
        self.raft.peer_down(peer_id)
        for pending in self._pending.values():
            pending.remove_peer(peer_id)
        self.events.emit("peer_detached", peer_id)
        self._request_tick()

    def _dispatch(self, message: Message) -> None:
        mtype = message.type
        if mtype == MessageType.RAFT:
            raft = self.raft
            if raft.is_member(message.source) or self._same_cluster(message.source):
                raft.receive(message.source, message.payload)
                # replies are sent inside receive(): tick only when the message can move things on
                # (a follower applies newly committed entries, a leader commits a replicated entry
                # or takes a forwarded command); acks of commit-only heartbeats need no tick
                kind = message.payload.get("type")
                if raft.has_pending_work() or kind not in ("append_entries", "next_node_idx") or (
                        kind == "next_node_idx" and raft.has_uncommitted()):
                    self._request_tick()
            return
        if mtype == MessageType.HELLO:
            self._on_hello(message)
            return
        if mtype == MessageType.JOIN_REQUEST:
            self._on_join_request(message)
            return
        if is_response(mtype):
            pending = self._pending.get(message.request_id or "")
            if pending is not None:
                pending.add(message)
            return
        storage = self._storages.get(message.storage_id or "")
        if mtype.name.endswith("_NOTIFICATION"):
            if storage is not None:
                storage.on_notification(message)
            return
        if storage is None:
            # the reference never answered and made the requester wait for its full timeout
            self.respond(message, Message(MessageType.NO_STORAGE_RESPONSE))
            return
        self._spawn(self._answer(storage, message))

    async def _answer(self, storage: StorageEndpoint, request: Message) -> None:
        response = await storage.on_request(request)
        if response is not None:
            self.respond(request, response)

    # ------------------------------------------------------------------ the loop
    def _request_tick(self) -> None:
        """Tick raft at the next loop iteration (coalesced: many requests, one tick)."""
        if not self._tick_scheduled and not self._closed and self._loop is not None:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        raft = self.raft
        try:
            raft.tick()
            # pysyncobj commits in one tick and applies in the next one on a lone leader, and
            # followers learn a commit index between ticks: tick again at once while there is
            # something to commit or apply instead of waiting for the timer
            if raft.has_pending_work():
                self._request_tick()
        except Exception:
            logger.exception("raft tick failed")
        now = time.monotonic()
        if now - self._last_maintenance >= 0.05:
            self._last_maintenance = now
            try:
                self._maintain(now)
            except Exception:
                logger.exception("grid maintenance failed")

    async def _run(self) -> None:
        """The timer: heartbeats, elections and maintenance happen even when nothing arrives."""
        interval = self.config.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self._tick()

    def _maintain(self, now: float) -> None:
        leader = self.raft.leader_id
        if leader != self._last_leader:
            self._last_leader = leader
            self.events.emit("leader_changed", leader)
        if self.raft.is_leader and self.machine.cluster is None and self._joining is None \
                and not self._cluster_init_sent:
            self._cluster_init_sent = True
            self._spawn(self._init_cluster())
        idle = self.config.peer_max_idle_ms / 1000
        if self.raft.is_leader:
            for member in self.raft.members - {self.local_id}:
                since = self._disconnected_since.get(member)
                if member not in self.remote_peers and since is None:
                    self._disconnected_since[member] = since = now
                if since is not None and now - since >= idle and member not in self._removing:
                    self._remove_member(member)
        # isolation -> standalone
        if self.remote_peers:
            self._isolated_since = None
        elif len(self.raft.members) > 1 or self._joining is not None:
            if self._isolated_since is None:
                self._isolated_since = now
            elif self.config.standalone_when_isolated and now - self._isolated_since >= idle:
                logger.warning("%s: isolated for %.1f s, continuing as a standalone cluster",
                               self.local_id, now - self._isolated_since)
                self._isolated_since = None
                self._become_standalone(keep_data=True)
        if self._joining is not None:
            self._continue_join(now)
        if now - self._last_hello >= min(1.0, max(0.2, idle / 3)):
            self._last_hello = now
            for peer in self.remote_peers:
                self._send_hello(peer)

    async def _init_cluster(self) -> None:
        try:
            await self._submit_command(encode_command(CMD_CLUSTER, uuid.uuid4().hex, _now_ms()), None)
        except Exception as exc:
            logger.debug("cluster init not committed yet: %s", exc)
        finally:
            self._cluster_init_sent = False

    def _remove_member(self, member: str) -> None:
        self._removing.add(member)
        logger.info("%s: removing raft member %s (not connected for %d ms)", self.local_id, member,
                    self.config.peer_max_idle_ms)

        def done(result: Any, error: int) -> None:
            self._removing.discard(member)
            if error != SUCCESS:
                logger.debug("removing %s not accepted yet (code %s)", member, error)

        self.raft.remove_member(member, done)
        self._request_tick()

    # ------------------------------------------------------------------ cluster merge
    def _hello_payload(self) -> dict[str, Any]:
        return {
            "cluster": list(self.machine.cluster) if self.machine.cluster else None,
            "members": sorted(self.raft.members),
            "leader": self.raft.leader_id,
            "joining": self._joining is not None,
        }

    def _same_cluster(self, peer: str) -> bool:
        """Raft traffic is taken from members and from peers of our cluster: a node that just
        installed a snapshot holds the membership of that snapshot, and must still hear the leader
        that joined later. Traffic of another cluster's raft (a group we left) is ignored."""
        theirs = (self._peer_hello.get(peer) or {}).get("cluster")
        if not theirs:
            return False
        ours = self._joining["cluster"] if self._joining is not None else self.cluster_id
        return theirs[0] == ours

    def _send_hello(self, peer: str) -> None:
        self._send_frame(peer, Message(MessageType.HELLO, destination=peer, payload=self._hello_payload()))

    def _on_hello(self, message: Message) -> None:
        info = message.payload or {}
        peer = message.source
        self._peer_hello[peer] = info
        theirs = info.get("cluster")
        if theirs is None or info.get("joining"):
            return
        their_cluster = (theirs[0], int(theirs[1]))
        joining = self._joining
        if joining is not None:
            # follow the target if it moved on (it dissolved into yet another cluster), or
            # switch to an even older cluster
            target = joining["target"]
            moved = peer in joining["members"] and their_cluster[0] != target[0]
            if their_cluster[0] != target[0] and (moved or (their_cluster[1], their_cluster[0]) < (
                    target[1], target[0])):
                self._dissolve_into(their_cluster, info)
            return
        mine = self.machine.cluster
        if mine is None:
            return
        if their_cluster[0] == mine[0]:
            if self.raft.is_leader and peer not in self.raft.members:
                self._add_member(peer)
            return
        # older cluster wins; ties by id
        if (their_cluster[1], their_cluster[0]) < (mine[1], mine[0]):
            self._dissolve_into(their_cluster, info)

    def _add_member(self, peer: str) -> None:
        if peer in self._removing:
            return
        logger.info("%s: adding %s to the raft group", self.local_id, peer)

        def done(result: Any, error: int) -> None:
            if error != SUCCESS:
                logger.debug("adding %s not accepted yet (code %s)", peer, error)

        self.raft.add_member(peer, done)
        self._request_tick()

    def _on_join_request(self, message: Message) -> None:
        peer = message.source
        info = message.payload or {}
        mine = self.machine.cluster
        if not self.raft.is_leader or mine is None or info.get("cluster") != mine[0]:
            return
        if peer not in self.raft.members:
            self._add_member(peer)

    def _export_replicated(self) -> dict[str, tuple[list[bytes], list[bytes]]]:
        return {sid: holder.export_entries() for sid, holder in self.machine.storages.items()}

    def _dissolve_into(self, cluster: tuple[str, int], info: dict[str, Any]) -> None:
        logger.info("%s: cluster %s dissolves into older cluster %s", self.local_id,
                    self.cluster_id, cluster[0])
        self.metrics.merges.inc()
        backlog = self._export_replicated() if self._joining is None else {}
        for sid, (keys, values) in backlog.items():
            prev = self._merge_backlog.get(sid)
            if prev:
                keys, values = prev[0] + keys, prev[1] + values
            self._merge_backlog[sid] = (keys, values)
        members = [m for m in info.get("members", []) if m != self.local_id]
        self._replace_raft(members)
        self.machine.reset()
        self.raft.hold_election(3600.0)
        self._joining = {"cluster": cluster[0], "target": cluster, "members": members,
                         "since": time.monotonic()}
        self._last_join_attempt = 0.0

    def _replace_raft(self, members: list[str]) -> None:
        old = self.raft
        self.raft = self._new_raft(members)
        old.destroy()
        self._fail_submits()
        self._removing.clear()
        self._request_tick()

    def _become_standalone(self, *, keep_data: bool) -> None:
        self._joining = None
        if not keep_data:
            self.machine.reset()
        self.machine.cluster = None
        self._replace_raft([])
        self._merge_backlog.clear()

    def _continue_join(self, now: float) -> None:
        joining = self._joining
        assert joining is not None
        if self.cluster_id == joining["cluster"] and self.raft.leader_id is not None:
            self._joining = None
            logger.info("%s: joined cluster %s (leader %s)", self.local_id, self.cluster_id, self.raft.leader_id)
            self.events.emit("cluster_changed", self.cluster_id)
            if self._merge_backlog:
                backlog, self._merge_backlog = self._merge_backlog, {}
                self._spawn(self._merge_entries(backlog))
            return
        if now - joining["since"] > max(10.0, self.config.peer_max_idle_ms * 10 / 1000):
            logger.warning("%s: could not join cluster %s in time; standalone again", self.local_id,
                           joining["cluster"])
            backlog = self._merge_backlog
            self._become_standalone(keep_data=False)
            self._merge_backlog = backlog
            self._spawn(self._reinsert_after_standalone())
            return
        if now - self._last_join_attempt >= 0.3:
            self._last_join_attempt = now
            for peer in joining["members"]:
                if peer in self.remote_peers:
                    self._send_frame(peer, Message(MessageType.JOIN_REQUEST, destination=peer,
                                                   payload={"cluster": joining["cluster"]}))

    async def _merge_entries(self, backlog: dict[str, tuple[list[bytes], list[bytes]]]) -> None:
        """Re-insert what this node held before joining: the cluster's value wins on conflicts."""
        from .storages.replicated import OP_INSERT_ALL

        limit = self.config.max_message_keys
        for sid, (keys, values) in backlog.items():
            if sid not in self.machine.storages:
                continue
            for lo in range(0, len(keys), limit):
                try:
                    await self.submit(sid, OP_INSERT_ALL, keys[lo:lo + limit], values[lo:lo + limit],
                                      timeout_ms=max(self.config.request_timeout_ms, 5000))
                except Exception as exc:
                    logger.warning("%s: merging %d entries of %s failed: %s", self.local_id,
                                   len(keys[lo:lo + limit]), sid, exc)

    async def _reinsert_after_standalone(self) -> None:
        for _ in range(100):
            if self.cluster_id is not None:
                break
            await asyncio.sleep(0.05)
        backlog, self._merge_backlog = self._merge_backlog, {}
        await self._merge_entries(backlog)

    def _on_cluster_changed(self) -> None:
        # peers compare clusters on hello: tell them at once instead of at the next periodic hello
        self._last_hello = 0.0
        self._request_tick()


_RAFT_REPLACED = -1  # the raft node was replaced (merge/standalone): re-submit to the new one


class _SubmitFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"raft command failed with code {code}")
        self.code = code


def _fields(message: Message) -> dict[str, Any]:
    return {
        "type": message.type,
        "source": message.source,
        "destination": message.destination,
        "storage_id": message.storage_id,
        "request_id": message.request_id,
        "keys": list(message.keys),
        "values": list(message.values),
        "sequence": message.sequence,
        "last": message.last,
        "payload": message.payload,
    }
