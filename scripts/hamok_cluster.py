"""Start, drive, kill and restart hamok_node.py processes on loopback (tests, chaos, bench)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import orjson

NODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hamok_node.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, name: str, cluster: ProcessCluster) -> None:
        self.name = name
        self.cluster = cluster
        self.port = free_port()
        self.control = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.secret = cluster.secret

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        peers = [f"{n.name}=127.0.0.1:{n.port}" for n in self.cluster.nodes if n is not self]
        cmd = [sys.executable, NODE, "--id", self.name, "--port", str(self.port), "--control",
               str(self.control), "--mode", self.cluster.mode, *self.cluster.extra]
        for p in peers:
            cmd += ["--peer", p]
        env = dict(os.environ, HAMOK_SECRET=self.secret or "")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.cluster.stderr, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise RuntimeError(f"node {self.name} did not start: {line!r}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def call(self, op: str, timeout: float = 60.0, **kwargs: Any) -> dict[str, Any]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.control), 5)
        try:
            writer.write(orjson.dumps({"op": op, **kwargs}) + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
            return orjson.loads(line)
        finally:
            writer.close()


class ProcessCluster:
    def __init__(self, n: int, *, mode: str = "hamok", secret: str | None = None,
                 extra: list[str] | None = None, quiet: bool = True) -> None:
        self.mode = mode
        self.secret = secret
        self.extra = extra or []
        self.stderr = subprocess.DEVNULL if quiet else None
        self.nodes: list[Node] = []
        self.nodes = [Node(f"n{i}", self) for i in range(n)]

    def add_node(self) -> Node:
        node = Node(f"n{len(self.nodes)}", self)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    async def statuses(self) -> dict[str, dict[str, Any]]:
        out = {}
        for node in self.alive():
            try:
                out[node.name] = await node.call("status", timeout=5)
            except (TimeoutError, OSError):
                pass
        return out

    async def wait_formed(self, timeout: float = 30.0, nodes: list[Node] | None = None) -> str:
        """Wait until the live nodes agree on one cluster and leader; returns the leader's name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wanted = {n.name for n in (nodes or self.alive())}
            st = {k: v for k, v in (await self.statuses()).items() if k in wanted}
            ok = (set(st) == wanted and len({s.get("cluster") for s in st.values()}) == 1
                  and len({s.get("leader") for s in st.values()}) == 1
                  and all({m.split(".")[0] for m in s.get("members", [])} == wanted
                          and len(s.get("members", [])) == len(wanted) and not s.get("joining")
                          for s in st.values()))
            leader = next(iter(st.values())).get("leader") if st else None
            if ok and leader:
                return str(leader)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"cluster did not form: {await self.statuses()}")

    def by_name(self, name: str) -> Node:
        """A node by its name, its raft id (name.incarnation) or its raw pysyncobj address."""
        return next(n for n in self.nodes if n.name == name.split(".")[0] or f"127.0.0.1:{n.port}" == name)

    def __enter__(self) -> ProcessCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
