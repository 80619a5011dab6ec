"""The pysyncobj 0.3.17 flaw hamok must not inherit (issue: success replies move the leader's
nextIndex backwards, and the follower then deletes every entry after prevLogIdx without
Raft's conflict check, holding less log than it acknowledged).

Each test drives a RaftNode with hand-made pysyncobj messages, so the interleaving is exact.
``safety_fix=False`` shows the unpatched behaviour; the default must hold Raft's rules.
Names follow the Raft paper's properties (§5.3 log matching, §5.4 leader completeness).
"""

from __future__ import annotations

from typing import Any

import pytest

from hamok.raft.node import RaftNode


class _Machine:
    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.applied.append(command)
        return None

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


def _follower(safety_fix: bool) -> tuple[RaftNode, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    node = RaftNode("f", ["L", "x"], _Machine(), lambda dest, msg: sent.append((dest, msg)) or True,
                    safety_fix=safety_fix)
    node.hold_election(3600)
    node.peer_up("L")
    return node, sent


def _append(prev: int, prev_term: int, entries: list[tuple[int, int]], commit: int = 1, term: int = 1) -> dict:
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": commit,
        "entries": [(b"\x00", idx, t) for idx, t in entries],
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
    }


def _acks(sent: list[tuple[str, dict[str, Any]]]) -> list[int]:
    return [m["next_node_idx"] for _, m in sent if m["type"] == "next_node_idx" and m["success"]]


def test_unpatched_pysyncobj_truncates_acknowledged_entries() -> None:
    """Reproduces the flaw: a duplicated (stale) append-entries makes the follower drop entries
    it had already acknowledged to the leader."""
    node, sent = _follower(safety_fix=False)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1)]))
    assert _acks(sent)[-1] == 5 and node.last_log_index == 4
    node.receive("L", _append(1, 0, [(2, 1)]))          # the stale duplicate arrives late
    assert node.last_log_index == 2                      # acknowledged entries 3 and 4 are gone


def test_log_matching_stale_duplicate_keeps_acknowledged_entries() -> None:
    node, sent = _follower(safety_fix=True)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1)]))
    assert _acks(sent)[-1] == 5
    node.receive("L", _append(1, 0, [(2, 1)]))
    assert node.last_log_index == 4
    # the reply acknowledges only what that message verified, never more
    assert _acks(sent)[-1] == 3


def test_log_matching_stale_heartbeat_truncates_nothing() -> None:
    node, sent = _follower(safety_fix=True)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1)]))
    node.receive("L", _append(2, 1, []))
    assert node.last_log_index == 4
    assert _acks(sent)[-1] == 3


def test_log_matching_truncates_only_at_a_term_conflict() -> None:
    node, sent = _follower(safety_fix=True)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1)], commit=1))
    # a new leader (term 2) holds a different entry at index 3: Raft deletes 3.. and appends
    node.receive("L", _append(2, 1, [(3, 2)], commit=1, term=2))
    assert node.last_log_index == 3
    assert node._local_term(3) == 2
    assert _acks(sent)[-1] == 4


def test_log_matching_appends_only_the_missing_suffix() -> None:
    node, sent = _follower(safety_fix=True)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1)]))
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1), (5, 1)]))
    assert node.last_log_index == 5
    assert _acks(sent)[-1] == 6


def test_state_machine_safety_commit_never_passes_the_verified_prefix() -> None:
    """A follower must not commit (apply) entries the leader's message did not verify."""
    node, _ = _follower(safety_fix=True)
    node.receive("L", _append(1, 0, [(2, 1), (3, 1), (4, 1)], commit=1))
    node.receive("L", _append(1, 0, [(2, 1)], commit=4))   # stale message, but a high commit index
    assert node.commit_index == 2


@pytest.mark.parametrize("safety_fix", [False, True])
def test_leader_next_index_on_pipelined_success_replies(safety_fix: bool) -> None:
    """The leader's nextIndex never moves backwards on a success reply (patched)."""
    sent: list[tuple[str, dict[str, Any]]] = []
    leader = RaftNode("L", ["L"], _Machine(), lambda d, m: sent.append((d, m)) or True, safety_fix=safety_fix)
    leader.tick()
    assert leader.is_leader
    for _ in range(3):
        leader.submit(b"\x00", lambda r, e: None)
        leader.tick()
    from hamok.raft.node import GridNode

    node = GridNode("f")
    leader._nodes["f"] = node
    next_index = leader._sync._SyncObj__raftNextIndex
    match_index = leader._sync._SyncObj__raftMatchIndex
    leader._sync._SyncObj__otherNodes.add(node)
    leader._sync._SyncObj__lastResponseTime[node] = 0.0
    next_index[node], match_index[node] = 10, 3          # optimistic after pipelining up to 9
    leader.receive("f", {"type": "next_node_idx", "next_node_idx": 6, "reset": False, "success": True})
    assert match_index[node] == 5
    assert next_index[node] == (10 if safety_fix else 6)
