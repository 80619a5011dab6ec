"""Start, kill and restart observer daemons (``python -m observer``) on loopback, each with its
own FileSink, joined by static discovery and a shared secret. Used by the cluster tests, the
chaos script and the cluster benchmark."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(session: Any, url: str) -> dict[str, float]:
    """A Prometheus text page as {sample name with labels: value}."""
    async with session.get(url) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class Daemon:
    def __init__(self, name: str, cluster: ObserverCluster) -> None:
        self.name = name
        self.cluster = cluster
        self.port, self.mgmt, self.hamok = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reports_path(self, start: int | None = None) -> Path:
        return self.cluster.workdir / f"{self.name}-{self.starts if start is None else start}.jsonl"

    def config(self) -> dict[str, Any]:
        c = self.cluster
        peers = {d.name: {"host": "127.0.0.1", "port": d.hamok} for d in c.daemons if d is not self}
        observer: dict[str, Any] = {
            "sources": {"websocket": {"minRemotePeers": 0}},
            "repository": {"useBackups": c.backups, **{k: c.idle_s for k in (
                "callMaxIdleTimeInS", "clientsMaxIdle", "peerConnectionsMaxIdle", "inboundTracksMaxIdle",
                "outboundTracksMaxIdle", "sfuMaxIdleTimeInS", "sfuTransportMaxIdleTimeInS",
                "sfuInboundRtpPadMaxIdleTimeInS", "sfuOutboundRtpPadMaxIdleTimeInS",
                "sfuSctpChannelMaxIdleTimeInS")}},
            "buffers": {"samplesCollector": {"maxItems": 100, "maxTimeInMs": 50},
                        "reportsCollector": {"maxItems": 1000, "maxTimeInMs": 100},
                        "debouncers": {"maxItems": 1000, "maxTimeInMs": 100}},
            "security": {"printConfigs": False},
            "sinks": {"file": {"type": "FileSink", "config": {"path": str(self.reports_path())}}},
            "hamok": {
                "secret": c.secret,
                "storageGrid": {"heartbeatInMs": 50, "followerMaxIdleInMs": 400, "peerMaxIdleInMs": 1500,
                                "requestTimeoutInMs": 2000},
                "endpoint": {"type": "WebsocketEndpoint", "config": {"serverHost": "127.0.0.1",
                                                                     "serverPort": self.hamok}},
                "discovery": {"type": "StaticDiscovery", "config": {"peers": peers}},
            },
        }
        observer.update(c.extra)
        return {"micronaut": {"server": {"port": self.port}}, "endpoints": {"all": {"port": self.mgmt}},
                "observer": observer}

    def start(self) -> None:
        self.starts += 1
        path = self.cluster.workdir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        log = open(self.cluster.workdir / f"{self.name}-{self.starts}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "observer", "--config", str(path)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30) -> int | None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        return None

    async def ready(self, session: Any) -> dict[str, Any] | None:
        try:
            async with session.get(f"http://127.0.0.1:{self.mgmt}/ready") as resp:
                return orjson.loads(await resp.read())
        except Exception:
            return None

    async def metrics(self, session: Any) -> dict[str, float]:
        return await scrape(session, f"http://127.0.0.1:{self.mgmt}/metrics")


class ObserverCluster:
    def __init__(self, n: int, *, backups: bool = False, idle_s: int = 3, secret: str = "cluster-secret-1234567",
                 extra: dict[str, Any] | None = None, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="observer-cluster-"))
        self.backups = backups
        self.idle_s = idle_s
        self.secret = secret
        self.extra = extra or {}
        self.daemons: list[Daemon] = []
        self.daemons = [Daemon(f"d{i}", self) for i in range(n)]

    def start(self) -> None:
        for d in self.daemons:
            d.start()

    def stop(self) -> None:
        for d in self.daemons:
            d.kill()

    def alive(self) -> list[Daemon]:
        return [d for d in self.daemons if d.alive]

    async def wait_ready(self, session: Any, timeout: float = 60.0) -> str:
        """All live daemons ready, in one grid with every live daemon as a member; returns the leader id."""
        deadline = time.monotonic() + timeout
        last: list[Any] = []
        while time.monotonic() < deadline:
            alive = self.alive()
            states = [await d.ready(session) for d in alive]
            last = states
            if all(s and s.get("status") == "UP" for s in states):
                grids = [s["grid"] for s in states if s]
                leaders = {g["leader"] for g in grids}
                if len(leaders) == 1 and all(len(g["members"]) == len(alive) for g in grids):
                    return str(leaders.pop())
            await asyncio.sleep(0.1)
        raise TimeoutError(f"cluster not ready: {last}")

    async def leader(self, session: Any) -> Daemon:
        leader_id = await self.wait_ready(session)
        for d in self.alive():
            state = await d.ready(session)
            if state and state["grid"]["id"] == leader_id:
                return d
        raise RuntimeError("leader not found")

    def reports(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.workdir.glob("*.jsonl")):
            out.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
        return out

    def __enter__(self) -> ObserverCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
