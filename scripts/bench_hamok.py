"""hamok benchmark: 3 processes on loopback, default config, ~100 B values.

Measures, for hamok and for raw pysyncobj (batching off, its own TCP transport, same
timeouts, same counts and order) in the same run:
  sequential replicated writes/s through the leader and through a follower,
  concurrent writes/s (128 in flight) through a follower,
  leader failover: SIGKILL of the leader -> first acknowledged write (median of N rounds),
and for hamok only: separated-storage get/set latency p50/p99 across peers.
Prints a table with the ratio ours/raw.

    python scripts/bench_hamok.py [--seq 2000] [--conc 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hamok_cluster import Node, ProcessCluster


async def _leader(cluster: ProcessCluster) -> Node:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for st in (await cluster.statuses()).values():
            if st.get("is_leader"):
                return cluster.by_name(st["id"])
        await asyncio.sleep(0.05)
    raise TimeoutError("no leader")


async def _failover(cluster: ProcessCluster, rounds: int) -> list[float]:
    times = []
    for r in range(rounds):
        leader = await _leader(cluster)
        survivors = [n for n in cluster.alive() if n is not leader]
        await survivors[0].call("write", key=f"pre{r}", value="x", timeout_ms=5000)
        start = time.monotonic()
        leader.kill()
        done = False
        while not done and time.monotonic() - start < 30:
            for node in survivors:
                answer = await node.call("write", key=f"fo{r}", value="x", timeout_ms=300)
                if answer.get("ok"):
                    times.append(time.monotonic() - start)
                    done = True
                    break
        leader.start()
        if cluster.mode == "hamok":
            await cluster.wait_formed(timeout=30)
        else:
            await asyncio.sleep(2.0)  # raw pysyncobj has no status of membership; let it rejoin
    return times


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, float]:
    extra = ["--separated"] if mode == "hamok" else []
    cluster = ProcessCluster(3, mode=mode, extra=extra)
    cluster.start()
    try:
        if mode == "hamok":
            await cluster.wait_formed()
        leader = await _leader(cluster)
        follower = next(n for n in cluster.alive() if n is not leader)
        out: dict[str, float] = {}
        res = await leader.call("seq", n=args.seq, prefix="L", timeout=600)
        out["sequential writes/s via leader"] = args.seq / res["elapsed"]
        res = await follower.call("seq", n=args.seq, prefix="F", timeout=600)
        out["sequential writes/s via follower"] = args.seq / res["elapsed"]
        res = await follower.call("conc", n=args.conc, inflight=128, prefix="C", timeout=600)
        out["concurrent writes/s via follower (128 in flight)"] = (args.conc - res["failures"]) / res["elapsed"]
        if mode == "hamok":
            keys = [f"sep{i}" for i in range(args.sep)]
            await leader.call("sep_set", keys=keys)
            got = await follower.call("sep_get", keys=keys)
            out["separated get across peers p50 ms"] = got["p50"] * 1000
            out["separated get across peers p99 ms"] = got["p99"] * 1000
            setr = await follower.call("sep_set_timed", keys=keys)
            out["separated set (remote owner) p50 ms"] = setr["p50"] * 1000
            out["separated set (remote owner) p99 ms"] = setr["p99"] * 1000
        fo = await _failover(cluster, args.rounds)
        out["failover s (median)"] = statistics.median(fo) if fo else float("nan")
        out["failover s (all)"] = fo  # type: ignore[assignment]
        return out
    finally:
        cluster.stop()


def _keep_best(best: dict[str, Any], run: dict[str, Any]) -> None:
    for key, value in run.items():
        if key not in best:
            best[key] = value
        elif key == "failover s (all)":
            best[key] = best[key] + value
        elif key.endswith(" ms"):
            best[key] = min(best[key], value)          # lower is better
        else:
            best[key] = max(best[key], value)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=2000)
    parser.add_argument("--conc", type=int, default=20000)
    parser.add_argument("--sep", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per mode, alternating hamok and raw; the best of each is kept, so a "
                             "load spike from other processes does not decide the ratio")
    args = parser.parse_args()
    ours: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for _ in range(args.repeat):
        for mode, best in (("hamok", ours), ("raw", raw)):
            _keep_best(best, await run_mode(mode, args))
    for figures in (ours, raw):
        if figures.get("failover s (all)"):
            figures["failover s (median)"] = statistics.median(figures["failover s (all)"])
    print(f"\nhamok vs raw pysyncobj 0.3.17 — 3 processes on 127.0.0.1, ~100 B values, "
          f"seq={args.seq} conc={args.conc} rounds={args.rounds}")
    print(f"{'figure':52} {'hamok':>10} {'raw':>10} {'ratio':>7}")
    for key, value in ours.items():
        if key == "failover s (all)":
            continue
        other = raw.get(key)
        if other is None:
            print(f"{key:52} {value:10.2f} {'-':>10} {'-':>7}")
            continue
        # for failover lower is better: ratio = raw/ours so that >= 1 means hamok is at least as good
        ratio = (other / value) if key.startswith("failover") else (value / other)
        print(f"{key:52} {value:10.2f} {other:10.2f} {ratio:7.2f}")
    print(f"failover rounds hamok: {[round(x, 3) for x in ours['failover s (all)']]}")  # type: ignore[union-attr]
    print(f"failover rounds raw:   {[round(x, 3) for x in raw['failover s (all)']]}")  # type: ignore[union-attr]


if __name__ == "__main__":
    asyncio.run(main())
