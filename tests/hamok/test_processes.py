"""Real processes over real websockets on loopback (scripts/hamok_node.py)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from hamok_cluster import ProcessCluster

pytestmark = pytest.mark.processes


async def _write_many(node, prefix: str, n: int) -> list[str]:
    acked = []
    for i in range(n):
        answer = await node.call("write", key=f"{prefix}{i}", value=i, timeout_ms=3000)
        if answer.get("ok"):
            acked.append(f"{prefix}{i}")
    return acked


async def _assert_everyone_has(cluster: ProcessCluster, keys: list[str]) -> None:
    for node in cluster.alive():
        await node.call("sync")
        entries = (await node.call("get_all", keys=keys))["entries"]
        missing = sorted(set(keys) - set(entries))
        assert not missing, f"{node.name} lost acknowledged writes: {missing[:10]}"


async def test_leader_killed_new_leader_no_acknowledged_write_lost_restart_catches_up_by_snapshot() -> None:
    cluster = ProcessCluster(3, extra=["--compaction-entries", "100", "--peer-max-idle-ms", "1000"])
    with cluster:
        leader = cluster.by_name(await cluster.wait_formed())
        follower = next(n for n in cluster.alive() if n is not leader)
        acked = await _write_many(follower, "a", 150)
        assert len(acked) == 150
        leader.kill()
        start = time.monotonic()
        new_leader = cluster.by_name(await cluster.wait_formed(timeout=20))
        assert new_leader is not leader
        assert time.monotonic() - start < 10
        acked += await _write_many(new_leader, "b", 150)
        await _assert_everyone_has(cluster, acked)
        leader.start()                                  # comes back with an empty state
        await cluster.wait_formed(timeout=30)
        await _assert_everyone_has(cluster, acked)
        status = await leader.call("status")
        assert status["size"] == len(acked)
        assert status["snapshots_installed"] >= 1       # the log was compacted: caught up by snapshot


async def test_fourth_peer_joins_and_catches_up() -> None:
    cluster = ProcessCluster(3)
    with cluster:
        leader = cluster.by_name(await cluster.wait_formed())
        acked = await _write_many(leader, "k", 100)
        fourth = cluster.add_node()
        fourth.start()                                 # it dials the three; one channel per pair
        await cluster.wait_formed(timeout=30)
        await _assert_everyone_has(cluster, acked)
        assert (await fourth.call("status"))["size"] == len(acked)
        await _write_many(fourth, "after", 10)


async def test_secret_mismatch_refuses_the_peer() -> None:
    cluster = ProcessCluster(3, secret="right-secret-123456")
    cluster.nodes[2].secret = "wrong-secret-654321"
    with cluster:
        await cluster.wait_formed(nodes=cluster.nodes[:2], timeout=20)
        await asyncio.sleep(1.0)
        odd = await cluster.nodes[2].call("status")
        assert odd["peers"] == []
        assert len(odd["members"]) == 1
        for node in cluster.nodes[:2]:
            status = await node.call("status")
            assert len(status["members"]) == 2
            assert all(not p.startswith("n2.") for p in status["peers"])


async def test_chaos_kill_and_restart_while_writing(chaos_rounds: int = 4) -> None:
    """Bounded chaos: random SIGKILL/restart of grid processes while a client inserts unique keys.
    Afterwards every acknowledged insert is on every live node, and none was applied twice
    (a double application would answer 'already exists' to its own writer)."""
    rng = random.Random(int(os.environ.get("HAMOK_CHAOS_SEED", "1")))
    cluster = ProcessCluster(3, extra=["--peer-max-idle-ms", "800"])
    acked: list[str] = []
    doubled: list[str] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            node = rng.choice(cluster.alive())
            key = f"w{i}"
            i += 1
            try:
                answer = await node.call("ins", key=key, value=i, timeout_ms=2000, timeout=5)
            except (TimeoutError, OSError, ValueError):
                continue
            if answer.get("ok"):
                acked.append(key)
                if answer.get("existing") is not None:
                    doubled.append(key)

    with cluster:
        await cluster.wait_formed()
        task = asyncio.create_task(writer())
        try:
            for _ in range(chaos_rounds):
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                victim = rng.choice(cluster.alive())
                victim.kill()
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                victim.start()
            await cluster.wait_formed(timeout=40)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await task
        await cluster.wait_formed(timeout=40)
        assert len(acked) > 50
        assert doubled == []
        await _assert_everyone_has(cluster, acked)


def test_standalone_example_runs_a_three_process_grid() -> None:
    """examples/hamok_counter.py: three processes, one cluster, 300 replicated entries everywhere."""
    import subprocess

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "hamok_counter.py")
    from hamok_cluster import free_port

    base = free_port()
    while base > 65000:
        base = free_port()
    env = dict(os.environ, HAMOK_EXAMPLE_BASE_PORT=str(base))
    result = subprocess.run([sys.executable, example], capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("node")]
    assert len(lines) == 3, result.stdout
    assert all("replicated=300" in line and "separated=['node0', 'node1', 'node2']" in line for line in lines), lines
    assert len({line.split("leader=")[1].split()[0] for line in lines}) == 1
