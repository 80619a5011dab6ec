"""Cluster benchmark: 3 daemons vs 1 daemon on the same load, in the same run.

Load: R rooms x 3 clients, one websocket per client, client i of room r on daemon (r+i) mod n,
realistic JSON client frame sequences (scripts/bench_observer.py Templates), a fixed number of
samples per client sent as fast as the daemons take them. Every daemon has a WebsocketSink to a
collector in this process, which records when each report arrives.

Prints: client samples/s in total, p50/p99 sample-to-sink latency, hamok messages per sample,
and (3 daemons, backups on) the time from SIGKILL of a daemon to the cluster serving its rooms
again (first report of a sample sent after the kill, for every room that had a client on it).

    python scripts/bench_cluster.py [--rooms 40] [--per-client 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

import orjson
from aiohttp import WSMsgType, web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_observer import Templates
from observer_cluster import ObserverCluster, free_port

SAMPLE_TYPES = ("OUTBOUND_AUDIO_TRACK", "OUTBOUND_VIDEO_TRACK", "INBOUND_AUDIO_TRACK", "INBOUND_VIDEO_TRACK",
                "PEER_CONNECTION_TRANSPORT")


class Collector:
    """The reports' destination: a websocket server counting distinct samples and their latency."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, int], float] = {}     # (clientId, ts) -> arrival
        self.reports = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            now = time.time() * 1000
            self.reports += 1
            report = orjson.loads(msg.data)
            payload = report["payload"]
            if report["type"] in SAMPLE_TYPES:
                key = (payload.get("clientId"), payload.get("timestamp"))
                self.samples.setdefault(key, now)
        return ws


def _hamok_messages(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("observertc_hamok_messages_sent_total"))


async def run_load(cluster: ObserverCluster, collector: Collector, tpl: Templates, rooms: int, per_client: int,
                   room_offset: int) -> dict[str, float]:
    import aiohttp

    sent: list[tuple[str, int]] = []
    async with aiohttp.ClientSession() as session:
        before = sum([_hamok_messages(await d.metrics(session)) for d in cluster.alive()])
        start = time.monotonic()

        async def client(room: int, member: int) -> None:
            daemon = cluster.alive()[(room + member) % len(cluster.alive())]
            url = f"ws://127.0.0.1:{daemon.port}/samples/bench/webapp?format=json"
            last = 0
            async with session.ws_connect(url, max_msg_size=0) as ws:
                for tick in range(per_client):
                    ts = last = max(int(time.time() * 1000), last + 1)   # the send time, unique per client
                    await ws.send_bytes(tpl.frame(tick, room_offset + room, member, ts))
                    sent.append((tpl.client_id(room_offset + room, member), ts))
                    await asyncio.sleep(0)

        await asyncio.gather(*(client(r, m) for r in range(rooms) for m in range(3)))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(k in collector.samples for k in sent):
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - start
        after = sum([_hamok_messages(await d.metrics(session)) for d in cluster.alive()])
    arrived = [k for k in sent if k in collector.samples]
    lat = sorted(collector.samples[k] - k[1] for k in arrived)
    return {
        "samples": len(sent),
        "samples/s": len(arrived) / elapsed,
        "p50 ms": statistics.median(lat) if lat else float("nan"),
        "p99 ms": lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "hamok msgs/sample": (after - before) / max(1, len(sent)),
        "missing": len(sent) - len(arrived),
    }


async def failover(cluster: ObserverCluster, collector: Collector, tpl: Templates, rooms: int,
                   room_offset: int) -> list[float]:
    """Kill a daemon; its clients move to the survivors and keep sending every 100 ms; per room,
    the time from the kill to the first report of a post-kill sample."""
    import aiohttp

    victim = cluster.alive()[0]
    index = cluster.daemons.index(victim)
    moved = [(r, m) for r in range(rooms) for m in range(3) if (r + m) % len(cluster.daemons) == index]
    victim.kill()
    killed_at = time.time() * 1000
    served: dict[int, float] = {}
    async with aiohttp.ClientSession() as session:
        tick = 100
        deadline = time.monotonic() + 60
        while len(served) < len({r for r, _ in moved}) and time.monotonic() < deadline:
            survivors = cluster.alive()
            for r, m in moved:
                if r in served:
                    continue
                ts = int(time.time() * 1000)
                daemon = survivors[(r + m) % len(survivors)]
                try:
                    async with session.post(daemon.base_url + "/rest/samples/bench/webapp?format=json",
                                            data=tpl.frame(tick, room_offset + r, m, ts),
                                            headers={"Content-Type": "application/octet-stream"}) as resp:
                        await resp.read()
                except aiohttp.ClientError:
                    pass
            tick += 1
            await asyncio.sleep(0.1)
            for r, m in moved:
                cid = tpl.client_id(room_offset + r, m)
                for (client_id, ts), arrived in list(collector.samples.items()):
                    if client_id == cid and ts > killed_at and r not in served:
                        served[r] = arrived - killed_at
    return sorted(v / 1000 for v in served.values())


async def main(args: argparse.Namespace) -> None:
    tpl = Templates()
    results: dict[int, dict[str, float]] = {}
    fo: list[float] = []
    for n in (1, 3):
        collector = Collector()
        await collector.start()
        sink = {"collector": {"type": "WebsocketSink", "config": {"uri": f"ws://127.0.0.1:{collector.port}/"}}}
        cluster = ObserverCluster(n, backups=True, idle_s=60, extra={"sinks": sink})
        try:
            cluster.start()
            import aiohttp

            async with aiohttp.ClientSession() as session:
                await cluster.wait_ready(session)
            await run_load(cluster, collector, tpl, max(3, args.rooms // 10), 2, room_offset=9000)   # warm-up
            results[n] = await run_load(cluster, collector, tpl, args.rooms, args.per_client, room_offset=0)
            if n == 3:
                fo = await failover(cluster, collector, tpl, args.rooms, room_offset=0)
        finally:
            cluster.stop()
            await collector.stop()
    print(f"\ncluster vs single daemon — {args.rooms} rooms x 3 clients, {args.per_client} samples per client, "
          "JSON frames over websocket, WebsocketSink to a local collector, backups on")
    print(f"{'daemons':>8} {'samples':>8} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'hamok msgs/sample':>18} "
          f"{'missing':>8}")
    for n, r in results.items():
        print(f"{n:>8} {r['samples']:8.0f} {r['samples/s']:10.0f} {r['p50 ms']:8.0f} {r['p99 ms']:8.0f} "
              f"{r['hamok msgs/sample']:18.2f} {r['missing']:8.0f}")
    if 1 in results and 3 in results:
        print(f"ratio 3 daemons / 1 daemon (samples/s): {results[3]['samples/s'] / results[1]['samples/s']:.2f}")
    if fo:
        print(f"SIGKILL of a daemon -> its rooms served again: median {statistics.median(fo):.2f} s, "
              f"max {max(fo):.2f} s over {len(fo)} rooms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--per-client", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
