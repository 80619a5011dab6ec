"""Bounded chaos for an observer cluster: M rounds of random SIGKILL/restart of daemons while a
load generator runs rooms across them (each client of a room on a different daemon, over REST so
every accepted sample is known). At the end it prints and checks:

- calls started vs ended, clients joined vs left (after the idle time every start has its end),
- duplicate events (the same event for the same entity twice: must be 0),
- clients never ended after idle (must be 0),
- samples lost between acceptance (HTTP 200) and the sinks (counted: a SIGKILLed daemon loses
  what it still buffered; the number is printed, not required to be 0).

    python scripts/chaos_observer.py [--rounds 4] [--rooms 6] [--seed 1] [--backups]

Exit code 0 when every check holds. Traffic goes to 127.0.0.1 only; every process it starts is
stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_observer import Templates
from observer_cluster import ObserverCluster

END = {"CALL_STARTED": "CALL_ENDED", "CLIENT_JOINED": "CLIENT_LEFT"}


def entity_of(payload: dict[str, Any]) -> str:
    name = payload["name"]
    if name.startswith("CALL_"):
        return str(payload["callId"])
    return f"{payload['callId']}/{payload['clientId']}"


async def load(cluster: ObserverCluster, tpl: Templates, rooms: int, seconds: float, rng: random.Random,
               accepted: list[tuple[str, int]]) -> None:
    """Each client posts a sample every 200-400 ms to a daemon picked by its position in the room;
    ``accepted`` collects (clientId, sample timestamp) of every sample answered with 200."""
    import aiohttp

    stop_at = time.monotonic() + seconds

    async def client(room: int, member: int) -> None:
        tick = 0
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < stop_at:
                alive = cluster.alive()
                if not alive:
                    await asyncio.sleep(0.1)
                    continue
                daemon = alive[(room + member) % len(alive)]
                ts = int(time.time() * 1000)
                data = tpl.frame(tick, room, member, ts)
                try:
                    async with session.post(daemon.base_url + "/rest/samples/chaos/webapp?format=json", data=data,
                                            headers={"Content-Type": "application/octet-stream"},
                                            timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        if resp.status == 200:
                            accepted.append((tpl.client_id(room, member), ts))
                            tick += 1
                except (TimeoutError, aiohttp.ClientError):
                    pass      # the daemon died under us: the monitor retries elsewhere
                await asyncio.sleep(rng.uniform(0.2, 0.4))

    await asyncio.gather(*(client(r, m) for r in range(rooms) for m in range(3)))


async def run(args: argparse.Namespace) -> int:
    import aiohttp

    rng = random.Random(args.seed)
    tpl = Templates()
    cluster = ObserverCluster(3, backups=args.backups, idle_s=args.idle)
    accepted: list[tuple[str, int]] = []
    kills = 0
    try:
        cluster.start()
        async with aiohttp.ClientSession() as session:
            await cluster.wait_ready(session)
            load_task = asyncio.create_task(load(cluster, tpl, args.rooms, args.rounds * 4.0 + 2, rng, accepted))
            for _ in range(args.rounds):
                await asyncio.sleep(rng.uniform(1.5, 3.0))
                victim = rng.choice(cluster.alive())
                victim.kill()
                kills += 1
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                victim.start()
                await cluster.wait_ready(session, timeout=60)
            await load_task
            # everything idles out now: every started call and joined client must end exactly once
            deadline = time.monotonic() + args.idle * 4 + 30
            while time.monotonic() < deadline:
                counts = collections.Counter(
                    r["payload"]["name"] for r in cluster.reports() if r["type"] == "CALL_EVENT")
                if counts["CALL_ENDED"] >= counts["CALL_STARTED"] and counts["CLIENT_LEFT"] >= counts[
                        "CLIENT_JOINED"]:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(3.0)
    finally:
        for daemon in cluster.daemons:
            daemon.terminate(timeout=30)
        cluster.stop()

    reports = cluster.reports()
    events = [r["payload"] for r in reports if r["type"] == "CALL_EVENT" and r["payload"]["name"] in (
        *END, *END.values())]
    per_entity = collections.Counter((p["name"], entity_of(p)) for p in events)
    duplicates = {k: n for k, n in per_entity.items() if n > 1}
    started = {entity_of(p) for p in events if p["name"] == "CALL_STARTED"}
    ended = {entity_of(p) for p in events if p["name"] == "CALL_ENDED"}
    joined = {entity_of(p) for p in events if p["name"] == "CLIENT_JOINED"}
    left = {entity_of(p) for p in events if p["name"] == "CLIENT_LEFT"}
    seen = {(r["payload"].get("clientId"), r["payload"].get("timestamp")) for r in reports
            if r["type"] not in ("CALL_EVENT", "SFU_EVENT")}
    seen_clients = collections.Counter(c for c, _ in seen)
    lost = len(set(accepted) - seen)
    rooms_with_calls = collections.defaultdict(set)
    for p in events:
        if p["name"] == "CALL_STARTED":
            rooms_with_calls[p["roomId"]].add(p["callId"])

    print(f"\nchaos: 3 daemons, {args.rounds} SIGKILL/restart rounds ({kills} kills), {args.rooms} rooms x 3 "
          f"clients, backups={'on' if args.backups else 'off'}, seed={args.seed}")
    rows = [
        ("samples accepted (HTTP 200)", len(accepted)),
        ("accepted samples that reached the sinks", len(set(accepted) & seen)),
        ("samples lost between acceptance and sinks", lost),
        ("calls started / ended", f"{len(started)} / {len(ended)}"),
        ("clients joined / left", f"{len(joined)} / {len(left)}"),
        ("duplicate events (must be 0)", len(duplicates)),
        ("calls never ended (must be 0)", len(started - ended)),
        ("clients never ended after idle (must be 0)", len(joined - left)),
        ("rooms with more than one call", sum(1 for v in rooms_with_calls.values() if len(v) > 1)),
        ("clients with reports", len(seen_clients)),
    ]
    for name, value in rows:
        print(f"  {name:46} {value}")
    if duplicates:
        print("  duplicates:", list(duplicates.items())[:10])
    ok = not duplicates and not (started - ended) and not (joined - left) and len(accepted) > 0
    print("result:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--idle", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backups", action="store_true")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
