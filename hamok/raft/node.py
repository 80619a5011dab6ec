"""pysyncobj driven from asyncio over hamok's own transport, with a Raft log-matching fix.

pysyncobj runs with ``autoTick=False``: the grid calls :meth:`RaftNode.tick` on wake-ups
(inbound raft message, submitted command) and on a short timer, so all Raft state lives
on the event loop thread. Its messages travel as msgpack inside hamok envelopes; the few
pickles pysyncobj makes itself are loaded through :mod:`hamok.raft.safe_pickle`.

The fix (verified against pysyncobj 0.3.17, pinned in pyproject.toml): with batching off
the leader pipelines append-entries and a success reply for an older message moves its
``nextIndex`` backwards; the follower then receives entries it already has and deletes
everything after ``prevLogIdx`` without Raft's conflict check, so it briefly holds less
log than it acknowledged. Here, every inbound append-entries is rewritten before
pysyncobj sees it so that the follower only truncates at a real term conflict (Raft
§5.3), only acknowledges what the leader's message verified, and never advances its
commit index past that point; and a success reply never moves the leader's nextIndex
backwards. ``safety_fix=False`` keeps the unpatched behaviour for the regression test.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.config import FAIL_REASON
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from . import safe_pickle

safe_pickle.install()

logger = logging.getLogger(__name__)

# failure codes after which a command may be re-submitted (idempotency makes it safe)
RETRYABLE_FAILURES = frozenset(
    {
        FAIL_REASON.QUEUE_FULL,
        FAIL_REASON.MISSING_LEADER,
        FAIL_REASON.DISCARDED,
        FAIL_REASON.NOT_LEADER,
        FAIL_REASON.LEADER_CHANGED,
        FAIL_REASON.UNKNOWN_OUTCOME,
        FAIL_REASON.REQUEST_DENIED,
    }
)
SUCCESS = FAIL_REASON.SUCCESS


class StateMachine(Protocol):
    def apply(self, command: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class _NoWakeup:
    """Stands in for pysyncobj's pipe notifier and poller."""

    def notify(self) -> None:
        return None

    def poll(self, timeout: float) -> None:
        return None

    def subscribe(self, *args: Any) -> None:
        return None

    def unsubscribe(self, *args: Any) -> None:
        return None


class GridNode(Node):
    """A raft member, identified by its grid's local id."""


class _Consumer(SyncObjConsumer):
    def __init__(self, machine: StateMachine) -> None:
        self._machine = machine
        super().__init__()

    @replicated
    def apply(self, command: bytes) -> Any:
        return self._machine.apply(command)

    def _serialize(self) -> bytes:
        return self._machine.snapshot()

    def _deserialize(self, data: bytes) -> None:
        self._machine.restore(data)


class _Transport(Transport):
    """pysyncobj's view of the network: hands messages to the bridge, takes inbound ones from it."""

    def __init__(self, sync_obj: Any, self_node: Node, other_nodes: Iterable[Node], *, bridge: RaftNode) -> None:
        super().__init__(sync_obj, self_node, other_nodes)
        self._bridge = bridge

    @property
    def ready(self) -> bool:
        return True

    def tryGetReady(self) -> None:
        return None

    def send(self, node: Node, message: dict[str, Any]) -> bool:
        return self._bridge._send(node, message)

    def addNode(self, node: Node) -> None:
        if node.id in self._bridge.connected:
            self._onNodeConnected(node)

    def dropNode(self, node: Node) -> None:
        self._onNodeDisconnected(node)

    def destroy(self) -> None:
        return None

    # called by the bridge
    def deliver(self, node: Node, message: dict[str, Any]) -> None:
        self._onMessageReceived(node, message)

    def connected(self, node: Node) -> None:
        self._onNodeConnected(node)

    def disconnected(self, node: Node) -> None:
        self._onNodeDisconnected(node)


class RaftNode:
    """One Raft member. Not thread safe: call everything from the event loop thread."""

    def __init__(
        self,
        local_id: str,
        members: Iterable[str],
        machine: StateMachine,
        send: Callable[[str, dict[str, Any]], bool],
        *,
        heartbeat_ms: int = 50,
        election_timeout_ms: int = 300,
        log_compaction_min_entries: int = 5000,
        log_retention_ms: int = 300_000,
        safety_fix: bool = True,
        on_state_changed: Callable[[], None] | None = None,
    ) -> None:
        self.local_id = local_id
        self.connected: set[str] = set()
        self._send_fn = send
        self.safety_fix = safety_fix
        self._reply_override: tuple[str, int] | None = None
        self._on_state_changed = on_state_changed
        self.truncations_of_applied_entries = 0
        timeout = election_timeout_ms / 1000
        conf = SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            appendEntriesPeriod=heartbeat_ms / 1000,
            raftMinTimeout=timeout,
            raftMaxTimeout=timeout * 2,
            # an isolated leader steps down after this long without a majority of responses
            leaderFallbackTimeout=max(timeout * 3, 1.0),
            connectionTimeout=timeout * 2,   # unused by our transport; pysyncobj requires it >= max timeout
            # entries are shipped whole (hamok's transport chunks large frames), so pysyncobj's
            # own pickled "transmission" path for big entries is never taken
            appendEntriesBatchSizeBytes=2**26,
            logCompactionMinEntries=log_compaction_min_entries,
            logCompactionMinTime=max(1.0, log_retention_ms / 1000),
            logCompactionSplit=False,
            onStateChanged=self._state_changed if on_state_changed else None,
        )
        self._consumer = _Consumer(machine)
        others = [GridNode(m) for m in members if m != local_id]
        self._transport: _Transport | None = None

        def make_transport(sync_obj: Any, self_node: Node, other_nodes: Iterable[Node]) -> _Transport:
            self._transport = _Transport(sync_obj, self_node, other_nodes, bridge=self)
            return self._transport

        self._sync = SyncObj(
            GridNode(local_id), others, conf=conf, consumers=[self._consumer], transportClass=make_transport
        )
        self._nodes: dict[str, Node] = {n.id: n for n in others}
        self._drop_self_wakeup()
        if not others:
            self.elect_now()

    def _drop_self_wakeup(self) -> None:
        """pysyncobj wakes its own tick thread through a pipe on every command and polls it each
        tick: with the grid driving the ticks that is three syscalls per write for nothing (and two
        file descriptors per raft node). Replace both with no-ops."""
        sync = self._sync
        notifier = getattr(sync, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            for fd in (notifier._PipeNotifier__pipeR, notifier._PipeNotifier__pipeW):
                with contextlib.suppress(OSError):
                    os.close(fd)
            sync._SyncObj__pipeNotifier = _NoWakeup()
        sync._poller = _NoWakeup()

    # ---- private state of pysyncobj we need (pinned version)
    @property
    def _log(self) -> Any:
        return self._sync._SyncObj__raftLog

    def _state_changed(self, old: int, new: int) -> None:
        if self._on_state_changed is not None:
            self._on_state_changed()

    # ---- status
    @property
    def leader_id(self) -> str | None:
        leader = self._sync._getLeader()
        return None if leader is None else str(leader.id)

    @property
    def is_leader(self) -> bool:
        return bool(self._sync._isLeader())

    @property
    def term(self) -> int:
        return int(self._sync.raftCurrentTerm)

    @property
    def commit_index(self) -> int:
        return int(self._sync.raftCommitIndex)

    @property
    def last_applied(self) -> int:
        return int(self._sync.raftLastApplied)

    @property
    def last_log_index(self) -> int:
        return int(self._log[-1][1])

    @property
    def log_size(self) -> int:
        return len(self._log)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(str(n.id) for n in self._sync.otherNodes) | {self.local_id}

    def is_member(self, peer_id: str) -> bool:
        node = self._nodes.get(peer_id)
        return node is not None and node in self._sync._SyncObj__otherNodes

    def has_pending_work(self) -> bool:
        """Committed entries wait to be applied, or a lone leader has entries to commit."""
        sync = self._sync
        commit = sync._SyncObj__raftCommitIndex
        if commit > sync._SyncObj__raftLastApplied:
            return True
        return bool(not sync._SyncObj__otherNodes and sync._isLeader() and self._log[-1][1] > commit)

    def has_uncommitted(self) -> bool:
        return bool(self._log[-1][1] > self._sync._SyncObj__raftCommitIndex)

    def elect_now(self) -> None:
        """Start an election at the next tick (a single-member group becomes leader at once)."""
        self._sync._SyncObj__raftElectionDeadline = 0

    def hold_election(self, seconds: float) -> None:
        """Do not start an election for a while (a joining node waits for the leader's first message)."""
        from pysyncobj.monotonic import monotonic

        self._sync._SyncObj__raftElectionDeadline = monotonic() + seconds

    # ---- driving
    def tick(self) -> None:
        self._sync.doTick(0)

    def submit(self, command: bytes, callback: Callable[[Any, int], None]) -> None:
        self._consumer.apply(command, callback=callback)

    def add_member(self, peer_id: str, callback: Callable[[Any, int], None]) -> None:
        self._sync.addNodeToCluster(GridNode(peer_id), callback=callback)

    def remove_member(self, peer_id: str, callback: Callable[[Any, int], None]) -> None:
        self._sync.removeNodeFromCluster(GridNode(peer_id), callback=callback)

    def destroy(self) -> None:
        self._sync._SyncObj__destroying = True
        self._sync._doDestroy()

    # ---- network
    def _node(self, peer_id: str) -> Node:
        node = self._nodes.get(peer_id)
        if node is None:
            node = self._nodes[peer_id] = GridNode(peer_id)
        return node

    def peer_up(self, peer_id: str) -> None:
        self.connected.add(peer_id)
        if self._transport is not None:
            self._transport.connected(self._node(peer_id))

    def peer_down(self, peer_id: str) -> None:
        self.connected.discard(peer_id)
        if self._transport is not None:
            self._transport.disconnected(self._node(peer_id))

    def _send(self, node: Node, message: dict[str, Any]) -> bool:
        override = self._reply_override
        if override is not None and message.get("type") == "next_node_idx" and node.id == override[0] \
                and message.get("success"):
            message = dict(message, next_node_idx=override[1])
        return self._send_fn(str(node.id), message)

    def receive(self, source: str, message: dict[str, Any]) -> None:
        if self._transport is None:
            return
        node = self._node(source)
        mtype = message.get("type")
        if self.safety_fix and mtype == "append_entries" and "prevLogIdx" in message:
            message = self._match_log(source, message)
        if self.safety_fix and mtype == "next_node_idx" and message.get("success") and not message.get("reset"):
            next_index = self._sync._SyncObj__raftNextIndex
            before = next_index.get(node)
            self._transport.deliver(node, message)
            if before is not None and next_index.get(node, before) < before:
                next_index[node] = before
            return
        try:
            self._transport.deliver(node, message)
        finally:
            self._reply_override = None

    def _local_term(self, index: int) -> int | None:
        log = self._log
        first = log[0][1]
        pos = index - first
        if pos < 0 or pos >= len(log):
            return None
        return int(log[pos][2])

    def _match_log(self, source: str, message: dict[str, Any]) -> dict[str, Any]:
        """Rewrite an append-entries so pysyncobj applies it the way Raft §5.3 says."""
        if message.get("transmission") is not None:
            return message
        prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        if prev_idx is None or self._local_term(prev_idx) != prev_term:
            return message  # pysyncobj answers "no match"; it deletes nothing on this path
        entries = message.get("entries") or []
        last_idx = self.last_log_index
        for pos, entry in enumerate(entries):
            local = self._local_term(entry[1])
            if local is None or local != entry[2]:
                if pos == 0:
                    return message
                # keep the verified prefix, hand pysyncobj the rest after its last matching entry
                prev = entries[pos - 1]
                return dict(message, prevLogIdx=prev[1], prevLogTerm=prev[2], entries=entries[pos:])
        verified = entries[-1][1] if entries else prev_idx
        # every entry is already here: append nothing, truncate nothing, and acknowledge and
        # commit only up to what this message verified
        rewritten = dict(
            message,
            prevLogIdx=last_idx,
            prevLogTerm=self._local_term(last_idx),
            entries=[],
            commit_index=min(message["commit_index"], verified),
        )
        if verified < last_idx:
            self._reply_override = (source, verified + 1)
        return rewritten
