"""Nothing from the network is unpickled unrestricted; the seed's grid keys load with clear errors."""

from __future__ import annotations

import os
import pickle

import pytest

from hamok.config import ConfigError, GridConfig
from hamok.raft import safe_pickle
from hamok.raft.node import GridNode


class _Exploit:
    def __reduce__(self):  # what an attacker would send in a raft command or snapshot
        return (os.system, ("echo owned > /dev/null",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_crafted_pickle_is_refused(protocol: int) -> None:
    with pytest.raises(safe_pickle.UnsafePickleError, match="system"):
        safe_pickle.loads(pickle.dumps(_Exploit(), protocol))


def test_builtins_eval_and_getattr_gadgets_are_refused() -> None:
    payload = b"cbuiltins\neval\n(V1+1\ntR."
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.loads(payload)
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.loads(b"cbuiltins\ngetattr\n(cbuiltins\nobject\nV__subclasses__\ntR.")


def test_what_pysyncobj_pickles_still_loads() -> None:
    command = (3, (b"\x93\x01\x02",), {})
    assert safe_pickle.loads(pickle.dumps(command, 2)) == command
    membership = ["add", "node-b", GridNode("node-b")]
    loaded = safe_pickle.loads(pickle.dumps(membership, 2))
    assert loaded[0] == "add" and loaded[2] == GridNode("node-b")
    snapshot = ([{}, b"state"], (b"\x00", 5, 1), (b"\x00", 4, 1), {GridNode("a"), GridNode("b")})
    assert safe_pickle.loads(pickle.dumps(snapshot, 2))[3] == {GridNode("a"), GridNode("b")}


def test_pysyncobj_modules_use_the_restricted_unpickler() -> None:
    import pysyncobj.serializer
    import pysyncobj.syncobj

    import hamok.raft.node  # noqa: F401 - installs it

    with pytest.raises(safe_pickle.UnsafePickleError):
        pysyncobj.syncobj.pickle.loads(pickle.dumps(_Exploit(), 2))
    with pytest.raises(safe_pickle.UnsafePickleError):
        pysyncobj.serializer.pickle.loads(pickle.dumps(_Exploit(), 2))


def test_grid_config_from_the_seed_keys() -> None:
    cfg = GridConfig.from_seed({"heartbeatInMs": 150, "followerMaxIdleInMs": 10000, "peerMaxIdleInMs": 10000,
                                "raftMaxLogEntriesRetentionTimeInMinutes": 5, "requestTimeoutInMs": 3000,
                                "sendingHelloTimeoutInMs": 1500, "applicationCommitIndexSyncTimeoutInMs": 60000},
                               local_id="a")
    assert (cfg.heartbeat_ms, cfg.follower_max_idle_ms, cfg.peer_max_idle_ms, cfg.log_retention_ms,
            cfg.request_timeout_ms) == (150, 10000, 10000, 300_000, 3000)


@pytest.mark.parametrize(("block", "message"), [
    ({"heartbeatInMs": 0}, "storageGrid.heartbeat_ms: must be > 0"),
    ({"heartbeatInMs": "fast"}, "storageGrid.heartbeatInMs: must be an integer"),
    ({"heartBeatInMs": 100}, "storageGrid.heartBeatInMs: unknown key"),
    ({"heartbeatInMs": 100, "followerMaxIdleInMs": 200}, "follower_max_idle_ms: must be more than 3 x heartbeat_ms"),
])
def test_grid_config_errors_name_the_key(block: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        GridConfig.from_seed(block, local_id="a")
