"""Three observer daemons on this machine forming one hamok grid: static discovery, a shared
secret, distinct ports (examples/config/static-cluster-node{1,2,3}.yaml).

    python examples/cluster/run.py                 # samples 7080/7180/7280, management 7081/7181/7281,
                                                   # grid 5601/5701/5801
    python examples/cluster/run.py --free-ports    # any free loopback ports

Waits until every node answers ``/ready`` (grid formed, both peers connected), prints the URLs,
and runs until Ctrl-C or SIGTERM. Then it stops the daemons by PID with SIGTERM (each one flushes
its pipeline and sinks), kills any that is still running after ``--stop-timeout`` seconds, and
exits. If a daemon dies on its own, the others are stopped too and the exit code is 1.

Each daemon logs to ``<run dir>/node-N.log`` and writes its reports (FileSink) to
``<run dir>/node-N.reports.jsonl``. The shared secret is $HAMOK_SECRET, else a random one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import aiohttp
import attrs

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "examples" / "config"
NODES = 3
DEFAULT_SAMPLES_PORTS = (7080, 7180, 7280)
DEFAULT_MANAGEMENT_PORTS = (7081, 7181, 7281)
DEFAULT_HAMOK_PORTS = (5601, 5701, 5801)
HOST = "127.0.0.1"
READY_LINE = "cluster ready"  # tests and scripts wait for this line on stdout


@attrs.frozen
class Node:
    number: int  # 1-based, as in the config file names
    samples_port: int
    management_port: int
    hamok_port: int
    run_dir: Path

    @property
    def name(self) -> str:
        return f"node-{self.number}"

    @property
    def config(self) -> Path:
        return CONFIG_DIR / f"static-cluster-node{self.number}.yaml"

    @property
    def log(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def reports(self) -> Path:
        return self.run_dir / f"{self.name}.reports.jsonl"

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.management_port}{path}"


def free_ports(count: int) -> list[int]:
    """Distinct ports that were free a moment ago (all sockets are held until every port is picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def plan_nodes(samples: Sequence[int], management: Sequence[int], hamok: Sequence[int], run_dir: Path) -> list[Node]:
    for label, ports in (("samples", samples), ("management", management), ("hamok", hamok)):
        if len(ports) != NODES:
            raise ValueError(f"--{label}-ports needs {NODES} ports, got {len(ports)}")
    every = [*samples, *management, *hamok]
    if len(set(every)) != len(every):
        raise ValueError(f"every port must be distinct, got {every}")
    return [Node(n + 1, samples[n], management[n], hamok[n], run_dir) for n in range(NODES)]


def node_env(base: Mapping[str, str], nodes: Sequence[Node], node: Node, secret: str) -> dict[str, str]:
    """The environment the node's config file reads (its placeholders), plus PYTHONPATH so the
    daemon runs from this checkout even when the project is not installed."""
    env = dict(base)
    env.pop("OBSERVER_CONFIG_FILE", None)  # --config is given
    env.update(
        APPLICATION_SERVER_PORT=str(node.samples_port),
        APPLICATION_MANAGEMENT_PORT=str(node.management_port),
        HAMOK_SECRET=secret,
        REPORTS_FILE_ENABLED="true",
        REPORTS_FILE=str(node.reports),
        POD_IP=HOST,  # the address the node advertises to its peers (shows in their logs)
    )
    for other in nodes:
        env[f"NODE_{other.number}_HOST"] = HOST
        env[f"NODE_{other.number}_HAMOK_PORT"] = str(other.hamok_port)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return env


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Cluster:
    def __init__(self, nodes: Sequence[Node], secret: str, *, python: str, log_level: str) -> None:
        self.nodes = list(nodes)
        self.secret = secret
        self.python = python
        self.log_level = log_level
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._logs: list[IO[bytes]] = []

    async def start(self) -> None:
        for node in self.nodes:
            log = open(node.log, "ab")  # noqa: ASYNC230 -- a local file, opened once before the daemon starts
            self._logs.append(log)
            # a session of its own: Ctrl-C reaches only this script, which stops the daemons in order
            self.processes[node.name] = await asyncio.create_subprocess_exec(
                self.python, "-m", "observer", "--config", str(node.config), "--log-level", self.log_level,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env=node_env(os.environ, self.nodes, node, self.secret), start_new_session=True,
            )
            print(f"{node.name}: pid {self.processes[node.name].pid}, log {node.log}", flush=True)

    def exited(self) -> list[tuple[Node, int]]:
        return [(n, p.returncode) for n in self.nodes
                if (p := self.processes.get(n.name)) is not None and p.returncode is not None]

    async def wait_ready(self, timeout: float, stop: asyncio.Event) -> bool:
        """True once every node answers /ready with 200; False on timeout, a stop request or a dead node."""
        pending = {node.name: node for node in self.nodes}
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while pending:
                if stop.is_set():
                    return False
                if dead := self.exited():
                    for node, code in dead:
                        print(f"{node.name} exited with code {code} while starting (a port in use? see --free-ports); "
                              f"its log ends with:\n{tail(node.log)}", file=sys.stderr, flush=True)
                    return False
                if time.monotonic() > deadline:
                    for node in pending.values():
                        print(f"{node.name} not ready after {timeout:.0f} s ({last.get(node.name, 'no answer')}); "
                              f"its log ends with:\n{tail(node.log)}", file=sys.stderr, flush=True)
                    return False
                for name, node in list(pending.items()):
                    try:
                        async with session.get(node.url("/ready")) as resp:
                            if resp.status == 200:
                                del pending[name]
                            else:
                                last[name] = f"/ready answered {resp.status}: {(await resp.text())[:300]}"
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        last[name] = f"/ready: {type(exc).__name__}"
                if pending:
                    await asyncio.sleep(0.2)
        return True

    async def wait_exit(self) -> tuple[Node, int]:
        """Returns when the first daemon exits (by itself: stopping is done by :meth:`stop`)."""
        by_task = {asyncio.ensure_future(p.wait()): n for n in self.nodes
                   if (p := self.processes.get(n.name)) is not None}
        try:
            done, _ = await asyncio.wait(by_task, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in by_task:
                task.cancel()
        task = done.pop()
        return by_task[task], task.result()

    async def stop(self, timeout: float) -> dict[str, int]:
        """SIGTERM every running daemon by PID, wait up to ``timeout`` s, SIGKILL the rest."""
        running = {name: p for name, p in self.processes.items() if p.returncode is None}
        for proc in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

        async def reap(name: str, proc: asyncio.subprocess.Process) -> None:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                print(f"{name} (pid {proc.pid}) did not stop within {timeout:.0f} s: killing it",
                      file=sys.stderr, flush=True)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

        await asyncio.gather(*(reap(name, proc) for name, proc in running.items()))
        for log in self._logs:
            log.close()
        return {name: p.returncode if p.returncode is not None else -1 for name, p in self.processes.items()}


def describe(nodes: Sequence[Node], took_s: float, secret_source: str) -> str:
    lines = [f"{READY_LINE} in {took_s:.1f} s (shared secret: {secret_source})"]
    for node in nodes:
        samples = f"{HOST}:{node.samples_port}"
        lines += [
            f"  {node.name}  samples  ws://{samples}/samples/<serviceId>/<mediaUnitId>"
            f"   http://{samples}/rest/samples/<serviceId>/<mediaUnitId>",
            f"          manage   {node.url('/health')}   {node.url('/ready')}   {node.url('/metrics')}",
            f"          grid     {HOST}:{node.hamok_port}   reports {node.reports}",
        ]
    targets = ",".join(f"{HOST}:{node.samples_port}" for node in nodes)
    lines += [f"load:  {sys.executable} {ROOT / 'examples/cluster/loadgen.py'} --targets {targets}",
              "Ctrl-C (or SIGTERM) stops the cluster."]
    return "\n".join(lines)


def _ports(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {NODES} comma-separated port numbers, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    joined = ",".join
    parser.add_argument("--samples-ports", type=_ports, default=list(DEFAULT_SAMPLES_PORTS),
                        help=f"REST + websocket ports (default {joined(map(str, DEFAULT_SAMPLES_PORTS))})")
    parser.add_argument("--management-ports", type=_ports, default=list(DEFAULT_MANAGEMENT_PORTS),
                        help=f"/health, /ready, /metrics ports (default {joined(map(str, DEFAULT_MANAGEMENT_PORTS))})")
    parser.add_argument("--hamok-ports", type=_ports, default=list(DEFAULT_HAMOK_PORTS),
                        help=f"grid ports (default {joined(map(str, DEFAULT_HAMOK_PORTS))})")
    parser.add_argument("--free-ports", action="store_true", help="pick free loopback ports instead")
    parser.add_argument("--run-dir", type=Path, help="logs and report files (default: a new temporary directory)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for /ready (default 60)")
    parser.add_argument("--stop-timeout", type=float, default=30.0,
                        help="seconds a daemon gets to flush after SIGTERM before it is killed (default 30)")
    parser.add_argument("--log-level", default="INFO", help="the daemons' log level (default INFO)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the daemons")
    return parser


async def run(args: argparse.Namespace) -> int:
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="observer-cluster-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.free_ports:
        ports = free_ports(3 * NODES)
        samples, management, hamok = ports[:NODES], ports[NODES:2 * NODES], ports[2 * NODES:]
    else:
        samples, management, hamok = args.samples_ports, args.management_ports, args.hamok_ports
    nodes = plan_nodes(samples, management, hamok, run_dir.resolve())
    secret = os.environ.get("HAMOK_SECRET") or secrets.token_hex(32)
    secret_source = "$HAMOK_SECRET" if os.environ.get("HAMOK_SECRET") else "generated for this run"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = Cluster(nodes, secret, python=args.python, log_level=args.log_level)
    print(f"run dir {run_dir}", flush=True)
    started = time.monotonic()
    code = 0
    try:
        await cluster.start()
        if not await cluster.wait_ready(args.ready_timeout, stop):
            return 0 if stop.is_set() else 1
        print(describe(nodes, time.monotonic() - started, secret_source), flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        died = asyncio.ensure_future(cluster.wait_exit())
        await asyncio.wait({stopped, died}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if died.done():
            node, rc = died.result()
            print(f"{node.name} exited with code {rc}; stopping the others. Its log ends with:\n{tail(node.log)}",
                  file=sys.stderr, flush=True)
            code = 1
        else:
            died.cancel()
    finally:
        print("stopping the cluster ...", flush=True)
        codes = await cluster.stop(args.stop_timeout)
        print("stopped: " + ", ".join(f"{name} exit {rc}" for name, rc in codes.items()), flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
