"""Observer benchmark: one daemon (its own process, so it has one core to itself), realistic
client samples (the JSON client frames of ../shared/fixtures, 12-20 KB each, with ids
rewritten per room and client and the sample timestamp set to the send time) over websocket
and over REST, into a counting sink inside the daemon.

Prints: client samples/s end to end, reports/s, p50/p99 sample-to-sink latency (paced run at
about half the measured capacity, and under the flood), the daemon's CPU time per sample (steadier
than samples/s on a shared VM; it includes the /metrics scrapes that detect the end of a run),
RSS with 10,000 active clients, and,
in the same run, the rate of bare JSON decoding (orjson.loads) of the same frames (the floor)
with the ratio.

    python scripts/bench_observer.py [--samples 20000] [--clients 300] [--active 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUFFER_MS = 50
# with no enabled sink the daemon adds its default logger sink; this one is enabled and takes no report
QUIET_SINKS = {"quiet": {"type": "LoggerSink", "reports": {"sendCallEvents": False}}}
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from observer_cluster import free_port, scrape  # noqa: E402 -- after the path is set

from observer.reports.client import RARE_SAMPLE_KEYS  # noqa: E402

SHARED = Path(os.environ.get("OBSERVER_SHARED_DIR", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


# ----------------------------------------------------------------------------- daemon side
def run_daemon(port: int, mgmt: int, sinks: dict[str, Any] | None = None) -> None:
    from prometheus_client import Counter, Histogram

    from observer.app import ObserverApp
    from observer.config import load_config
    from observer.gc_tuning import tune_gc_for_throughput
    from observer.reports.model import Report, ReportType
    from observer.sinks.base import Sink

    sample_types = {t for t in ReportType if t not in (ReportType.CALL_EVENT, ReportType.SFU_EVENT)}

    class CountingSink(Sink):
        type_name = "CountingSink"

        def __init__(self, registry: Any) -> None:
            super().__init__("count", registry=registry)
            self.reports = Counter("bench_reports", "reports received", registry=registry)
            self.latency = Histogram("bench_sample_to_sink_seconds", "sample timestamp -> sink",
                                     buckets=(.005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, .75, 1, 1.5, 2,
                                              3, 5, 10, 30),
                                     registry=registry)

        async def _send(self, batch: Sequence[Report]) -> None:
            now = time.time() * 1000
            self.reports.inc(len(batch))
            seen = set()
            for report in batch:
                if report.type in sample_types:
                    ts = report.payload.get("timestamp")
                    key = (report.payload.get("clientId"), ts)
                    if ts and key not in seen:       # one latency point per sample, not per report
                        seen.add(key)
                        self.latency.observe(max(0.0, now - ts) / 1000)

    config = load_config(None, env={}, overrides={
        "micronaut": {"server": {"port": port}}, "endpoints": {"all": {"port": mgmt}},
        "observer": {"sinks": sinks or QUIET_SINKS,
                     "security": {"printConfigs": False},
                     # short collector windows, so the latency shows processing, not the seed's
                     # 1 s / 2 s batching windows
                     "buffers": {"samplesCollector": {"maxItems": 100, "maxTimeInMs": BUFFER_MS},
                                 "reportsCollector": {"maxItems": 5000, "maxTimeInMs": BUFFER_MS}}},
    })

    async def main() -> None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        app = ObserverApp(config, registry=registry, extra_sinks=[CountingSink(registry)])
        await app.start()
        tune_gc_for_throughput()  # as observer.app.run does
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ----------------------------------------------------------------------------- load side
class Templates:
    """Per-client frame sequences (as a real monitor sends them: its first frames carry the call's
    meta data, later ones only stats), with ids rewritten per (room, client) by byte replacement."""

    def __init__(self) -> None:
        manifest = json.loads((FIXTURES / "manifest.json").read_text())
        sequences: dict[str, list[tuple[bytes, list[bytes], bytes]]] = {}
        self.raw: list[bytes] = []
        for entry in sorted(manifest["files"], key=lambda e: (e["scenario"], e["order"])):
            if entry["format"] != "json" or not entry["contains"]["clientSamples"]:
                continue
            data = (FIXTURES / entry["file"]).read_bytes()
            c = entry["contains"]
            ids = [*c["clientIds"], *c["peerConnectionIds"], *c["inboundTrackIds"], *c["outboundTrackIds"],
                   *c["sfuStreamIds"], *c["sfuSinkIds"]]
            sample = json.loads(data)["clientSamples"][0]
            ts_bytes = json.dumps(sample["timestamp"]).encode()
            sequences.setdefault(c["clientIds"][0], []).append(
                (data, [i.encode() for i in ids], ts_bytes if ts_bytes in data else b""))
            self.raw.append(data)
        self.sequences = list(sequences.values())
        # per sequence, the frames without meta data: what the monitor keeps sending after the first ones
        self.steady = [[i for i, (data, _, _) in enumerate(seq)
                        if RARE_SAMPLE_KEYS.isdisjoint(json.loads(data)["clientSamples"][0])] or [len(seq) - 1]
                       for seq in self.sequences]
        self.room_names = sorted({r.encode() for e in manifest["files"] for r in e["contains"].get("roomIds", [])})

    def frame(self, tick: int, room: int, client: int, timestamp_ms: int | None = None) -> bytes:
        """The ``tick``-th frame of a client: the recorded ones first, then its frames without meta data
        in turn. The sample's timestamp is ``timestamp_ms`` (default: now)."""
        index = (room * 3 + client) % len(self.sequences)
        sequence = self.sequences[index]
        if tick >= len(sequence):
            steady = self.steady[index]
            tick = steady[(tick - len(sequence)) % len(steady)]
        data, ts = self._rewritten(tick, room, client)
        if ts:
            data = data.replace(ts, b"%d" % (int(time.time() * 1000) if timestamp_ms is None else timestamp_ms))
        return data

    @functools.lru_cache(maxsize=4096)  # noqa: B019 -- one Templates per run; the load side must stay cheap
    def _rewritten(self, tick: int, room: int, client: int) -> tuple[bytes, bytes]:
        data, ids, ts = self.sequences[(room * 3 + client) % len(self.sequences)][tick]
        tag = b"%012x" % (room * 16 + client)
        for original in ids:
            data = data.replace(original, original[:-12] + tag)
        for name in self.room_names:
            data = data.replace(name, b"bench-room-%08d" % room)
        return data, ts

    def client_id(self, room: int, client: int) -> str:
        """The clientId the frames of (room, client) carry."""
        sequence = self.sequences[(room * 3 + client) % len(self.sequences)]
        original = sequence[0][1][0]
        return (original[:-12] + b"%012x" % (room * 16 + client)).decode()


def histogram_quantile(metrics: dict[str, float], before: dict[str, float], q: float) -> float:
    buckets = []
    for key, value in metrics.items():
        if key.startswith("bench_sample_to_sink_seconds_bucket"):
            le = key.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def _total(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


async def wait_done(session: Any, metrics_url: str, before: dict[str, float], samples: int,
                    timeout: float = 300) -> tuple[float, dict[str, float]]:
    """Done when the pipeline processed every sample sent and the sink got every report produced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = await scrape(session, metrics_url)
        processed = _total(m, 'observertc_pipeline_samples_total{kind="client"}') - _total(
            before, 'observertc_pipeline_samples_total{kind="client"}')
        produced = _total(m, "observertc_pipeline_reports_total") - _total(before, "observertc_pipeline_reports_total")
        arrived = m.get("bench_reports_total", 0.0) - before.get("bench_reports_total", 0.0)
        dropped = (_total(m, "observertc_sink_reports_dropped_total")
                   - _total(before, "observertc_sink_reports_dropped_total"))
        if dropped:
            raise RuntimeError(f"the sinks dropped {dropped:.0f} reports")
        if processed >= samples and arrived >= produced:
            return time.monotonic(), m
        await asyncio.sleep(0.05)
    raise TimeoutError("the pipeline did not finish in time")


async def drive(args: argparse.Namespace, tpl: Templates, port: int, mgmt: int, transport: str,
                samples: int, rate: float | None) -> dict[str, float]:
    import aiohttp

    metrics_url = f"http://127.0.0.1:{mgmt}/metrics"
    clients = args.clients
    # no connection limit: aiohttp's default of 100 would queue the other clients' websockets
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        before = await scrape(session, metrics_url)
        base_reports = before.get("bench_reports_total", 0.0)
        per_client = samples // clients
        tick0 = args.ticks_sent
        args.ticks_sent += per_client
        interval = (clients / rate) if rate else 0.0
        start = time.monotonic()

        async def ws_client(c: int) -> None:
            room, member = divmod(c, 3)
            url = f"ws://127.0.0.1:{port}/samples/bench/webapp?format=json"
            async with session.ws_connect(url, max_msg_size=0) as ws:
                for i in range(per_client):
                    if interval:  # clients spread over the interval, as independent monitors are
                        await asyncio.sleep(max(0.0, start + (i + c / clients) * interval - time.monotonic()))
                    await ws.send_bytes(tpl.frame(tick0 + i, room, member))
                    if not interval and i % 4 == 0:
                        await asyncio.sleep(0)

        async def rest_client(c: int) -> None:
            room, member = divmod(c, 3)
            url = f"http://127.0.0.1:{port}/rest/samples/bench/webapp?format=json"
            for i in range(per_client):
                if interval:
                    await asyncio.sleep(max(0.0, start + (i + c / clients) * interval - time.monotonic()))
                async with session.post(url, data=tpl.frame(tick0 + i, room, member),
                                        headers={"Content-Type": "application/octet-stream"}) as resp:
                    assert resp.status == 200

        worker = ws_client if transport == "ws" else rest_client
        await asyncio.gather(*(worker(c) for c in range(clients)))
        sent_done = time.monotonic()
        sent = per_client * clients
        end, after = await wait_done(session, metrics_url, before, sent)
        got_reports = after["bench_reports_total"] - base_reports
        return {
            "samples": sent,
            "samples/s": sent / (end - start),
            "reports/s": got_reports / (end - start),
            "send s": sent_done - start,
            "p50 ms": histogram_quantile(after, before, 0.5) * 1000,
            "p99 ms": histogram_quantile(after, before, 0.99) * 1000,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def active_clients_rss(tpl: Templates, port: int, mgmt: int, pid: int, active: int,
                             rate: float = 700.0) -> tuple[float, float, float]:
    """Join ``active`` clients (their first frame each, at ``rate`` per second, below capacity so the
    pipeline's backlog does not decide the number), then read the daemon's RSS. Returns (growth MB,
    total MB, clients the daemon reports as joined)."""
    import aiohttp

    idle_rss = rss_mb(pid)
    # no connection limit: aiohttp's default of 100 would queue the other clients' websockets
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        before = await scrape(session, f"http://127.0.0.1:{mgmt}/metrics")
        sem = asyncio.Semaphore(16)
        start = time.monotonic()

        async def one(c: int) -> None:
            await asyncio.sleep(max(0.0, start + c / rate - time.monotonic()))
            room, member = divmod(c, 3)
            async with sem, session.post(f"http://127.0.0.1:{port}/rest/samples/rss/webapp?format=json",
                                         data=tpl.frame(0, 100_000 + room, member),
                                         headers={"Content-Type": "application/octet-stream"}) as resp:
                assert resp.status == 200

        await asyncio.gather(*(one(c) for c in range(active)))
        await asyncio.sleep(3.0)
        after = await scrape(session, f"http://127.0.0.1:{mgmt}/metrics")
    key = 'observertc_pipeline_events_total{name="CLIENT_JOINED"}'
    joined = after.get(key, 0.0) - before.get(key, 0.0)
    return rss_mb(pid) - idle_rss, rss_mb(pid), joined


def bare_decode_rate(tpl: Templates, seconds: float = 2.0) -> float:
    import orjson

    frames = tpl.raw
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for data in frames:
            orjson.loads(data)
        n += len(frames)
    return n / (time.perf_counter() - start)


def _start_daemon(sinks: dict[str, Any] | None = None) -> tuple[subprocess.Popen[bytes], int, int]:
    port, mgmt = free_port(), free_port()
    command = [sys.executable, __file__, "--daemon", "--port", str(port), "--mgmt", str(mgmt)]
    if sinks:
        command += ["--sinks-json", json.dumps(sinks)]
    daemon = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert daemon.stdout is not None
    assert daemon.stdout.readline().startswith(b"ready")
    return daemon, port, mgmt


async def flood_rate(tpl: Templates, samples: int, clients: int,
                     sinks: dict[str, Any] | None = None) -> dict[str, float]:
    """A websocket flood of ``samples`` client samples from ``clients`` clients into a fresh daemon whose
    sinks are ``sinks`` (the observer.sinks block) beside the counting sink (used by bench_sinks.py)."""
    daemon, port, mgmt = _start_daemon(sinks)
    try:
        args = argparse.Namespace(clients=clients, ticks_sent=0)
        await drive(args, tpl, port, mgmt, "ws", clients * 2, None)   # warm-up: clients join
        return await drive(args, tpl, port, mgmt, "ws", samples, None)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


async def main(args: argparse.Namespace) -> None:
    tpl = Templates()
    daemon, port, mgmt = _start_daemon()
    try:
        args.ticks_sent = 0
        await drive(args, tpl, port, mgmt, "ws", args.clients * 2, None)   # warm-up: clients join

        async def measured(transport: str, samples: int, rate: float | None) -> dict[str, float]:
            cpu = cpu_seconds(daemon.pid)
            result = await drive(args, tpl, port, mgmt, transport, samples, rate)
            result["cpu us"] = (cpu_seconds(daemon.pid) - cpu) / result["samples"] * 1e6
            return result

        flood_ws = await measured("ws", args.samples, None)
        paced_ws = await measured("ws", args.samples // 2, flood_ws["samples/s"] * 0.5)
        flood_rest = await measured("rest", args.samples // 2, None)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    daemon, port, mgmt = _start_daemon()    # a fresh daemon: RSS of the active clients alone
    try:
        growth, rss_total, joined = await active_clients_rss(tpl, port, mgmt, daemon.pid, args.active)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    floor = bare_decode_rate(tpl)
    print(f"\nobserver: one daemon process, JSON client frames ({len(tpl.raw)} templates, "
          f"{statistics.mean(len(f) for f in tpl.raw) / 1024:.1f} KB avg, per-client sequences), "
          f"{args.clients} clients, collector windows {BUFFER_MS} ms")
    print(f"{'run':34} {'samples':>8} {'samples/s':>10} {'reports/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'daemon CPU us/sample':>21}")
    for name, r in (("websocket, flood", flood_ws), ("websocket, paced at 50% capacity", paced_ws),
                    ("REST, flood (1 request/client)", flood_rest)):
        print(f"{name:34} {r['samples']:8.0f} {r['samples/s']:10.0f} {r['reports/s']:10.0f} "
              f"{r['p50 ms']:8.1f} {r['p99 ms']:8.1f} {r['cpu us']:21.0f}")
    print(f"{'bare orjson.loads of the frames':34} {'':8} {floor:10.0f}")
    print(f"ratio websocket end-to-end / bare decoding: {flood_ws['samples/s'] / floor:.3f}")
    print(f"RSS with {args.active} active clients (fresh daemon, {joined:.0f} CLIENT_JOINED): "
          f"{rss_total:.0f} MB total, +{growth:.0f} MB for the clients")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--port", type=int)
    parser.add_argument("--mgmt", type=int)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--active", type=int, default=10000)
    parser.add_argument("--sinks-json", default=None, help="daemon mode: the observer.sinks block (JSON)")
    cli = parser.parse_args()
    if cli.daemon:
        run_daemon(cli.port, cli.mgmt, json.loads(cli.sinks_json) if cli.sinks_json else None)
    else:
        asyncio.run(main(cli))
