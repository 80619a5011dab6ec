"""One grid member as an OS process, driven over a JSON-lines control socket.

Used by the real-process tests, the chaos script and the benchmark. ``--mode hamok`` runs a
StorageGrid over the websocket endpoint; ``--mode raw`` runs plain pysyncobj (its own TCP
transport, batching off, same timeouts) so both can be measured in one run.

    python scripts/hamok_node.py --id n0 --port 5600 --control 7600 --peer n1=127.0.0.1:5601 ...

Control requests (one JSON object per line, one JSON answer per line): status, write,
seq, conc, get_all, keys, sep_set, sep_get, sync. Only loopback is served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HamokNode:
    def __init__(self, args: argparse.Namespace) -> None:
        from hamok import GridConfig, StorageGrid
        from hamok.transport.websocket import WebsocketEndpoint

        # a fresh id per process start: a restarted process must not reuse the raft identity (and
        # forgotten votes) of its previous incarnation
        local_id = f"{args.id}.{uuid.uuid4().hex[:6]}"
        self.endpoint = WebsocketEndpoint(local_id, "127.0.0.1", args.port, secret=args.secret or None)
        cfg: dict[str, Any] = {"local_id": local_id}
        if args.peer_max_idle_ms:
            cfg["peer_max_idle_ms"] = args.peer_max_idle_ms
        if args.compaction_entries:
            cfg["log_compaction_min_entries"] = args.compaction_entries
        self.grid = StorageGrid(self.endpoint, GridConfig(**cfg))
        self.store = self.grid.replicated_storage("bench")
        self.sep = self.grid.separated_storage("sep") if args.separated else None
        self.peers = args.peer

    async def start(self) -> None:
        await self.grid.start()
        for spec in self.peers:
            name, addr = spec.split("=", 1)
            host, port = addr.rsplit(":", 1)
            self.endpoint.add_address(name, host, int(port))

    def status(self) -> dict[str, Any]:
        g = self.grid
        return {"id": g.local_id, "leader": g.leader_id, "is_leader": g.is_leader,
                "members": sorted(g.members), "cluster": g.cluster_id, "joining": g.joining,
                "peers": sorted(g.remote_peers), "size": self.store.local.local_size(),
                "applied": g.machine.applied_commands, "duplicates": g.machine.duplicates_skipped,
                "snapshots_installed": g.machine.restores, "log_size": g.raft.log_size}

    async def write(self, key: str, value: Any, timeout_ms: int | None) -> None:
        await asyncio.wait_for(self.store.set(key, value), (timeout_ms or 3000) / 1000)

    async def get_all(self, keys: list[str]) -> dict[str, Any]:
        return await self.store.get_all(keys)

    async def insert(self, key: str, value: Any, timeout_ms: int | None) -> Any:
        return await asyncio.wait_for(self.store.insert(key, value), (timeout_ms or 3000) / 1000)

    async def keys(self) -> list[str]:
        return sorted(await self.store.keys())

    async def sync(self) -> None:
        await self.store.sync()


class RawNode:
    """pysyncobj as its authors ship it: TCP transport, its own tick thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        from pysyncobj import SyncObj, SyncObjConf
        from pysyncobj.batteries import ReplDict

        self.loop = asyncio.get_running_loop()
        self.dict = ReplDict()
        others = [spec.split("=", 1)[1] for spec in args.peer]
        conf = SyncObjConf(appendEntriesUseBatch=False, autoTickPeriod=0.01, appendEntriesPeriod=0.05,
                           raftMinTimeout=0.3, raftMaxTimeout=0.6, connectionRetryTime=0.5,
                           connectionTimeout=1.0, dynamicMembershipChange=False)
        self.self_addr = f"127.0.0.1:{args.port}"
        self.sync_obj = SyncObj(self.self_addr, others, conf=conf, consumers=[self.dict])

    async def start(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        leader = self.sync_obj._getLeader()
        return {"id": self.self_addr, "leader": None if leader is None else str(leader.id),
                "is_leader": self.sync_obj._isLeader(), "size": len(self.dict)}

    async def write(self, key: str, value: Any, timeout_ms: int | None) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()

        def done(res: Any, err: int) -> None:
            def settle() -> None:
                if fut.done():
                    return
                if err == 0:
                    fut.set_result(None)
                else:
                    fut.set_exception(RuntimeError(f"pysyncobj error {err}"))

            self.loop.call_soon_threadsafe(settle)

        self.dict.set(key, value, callback=done)
        await asyncio.wait_for(fut, (timeout_ms or 3000) / 1000)

    async def get_all(self, keys: list[str]) -> dict[str, Any]:
        return {k: self.dict[k] for k in keys if k in self.dict}

    async def keys(self) -> list[str]:
        return sorted(self.dict.keys())

    async def sync(self) -> None:
        return None


async def handle(node: Any, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "status":
        return node.status()
    if op == "write":
        await node.write(request["key"], request.get("value"), request.get("timeout_ms"))
        return {"ok": True}
    if op == "ins":
        existing = await node.insert(request["key"], request.get("value"), request.get("timeout_ms"))
        return {"ok": True, "existing": existing}
    if op == "seq":
        n, prefix = request["n"], request.get("prefix", "s")
        start = time.perf_counter()
        for i in range(n):
            await node.write(f"{prefix}{i}", "x" * request.get("size", 100), request.get("timeout_ms"))
        return {"elapsed": time.perf_counter() - start}
    if op == "conc":
        n, inflight, prefix = request["n"], request["inflight"], request.get("prefix", "c")
        value = "x" * request.get("size", 100)
        sem = asyncio.Semaphore(inflight)
        failures = 0

        async def one(i: int) -> None:
            nonlocal failures
            async with sem:
                try:
                    await node.write(f"{prefix}{i}", value, request.get("timeout_ms", 10_000))
                except Exception:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return {"elapsed": time.perf_counter() - start, "failures": failures}
    if op == "get_all":
        return {"entries": await node.get_all(request["keys"])}
    if op == "keys":
        return {"keys": await node.keys()}
    if op == "sync":
        await node.sync()
        return {"ok": True}
    if op == "sep_set":
        await node.sep.set_all({k: "x" * request.get("size", 100) for k in request["keys"]})
        return {"ok": True}
    if op == "sep_get":
        latencies = []
        for key in request["keys"]:
            start = time.perf_counter()
            value = await node.sep.get(key)
            latencies.append(time.perf_counter() - start)
            if value is None:
                return {"error": f"missing {key}"}
        return {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)}
    if op == "sep_set_timed":
        latencies = []
        for key in request["keys"]:
            start = time.perf_counter()
            await node.sep.set(key, "y" * request.get("size", 100))
            latencies.append(time.perf_counter() - start)
        return {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)}
    return {"error": f"unknown op {op}"}


async def serve(args: argparse.Namespace) -> None:
    node: Any = RawNode(args) if args.mode == "raw" else HamokNode(args)
    await node.start()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await handle(node, orjson.loads(line))
                except Exception as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                writer.write(orjson.dumps(answer) + b"\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", args.control)
    print(f"ready {args.id}", flush=True)
    async with server:
        with contextlib.suppress(asyncio.CancelledError):
            await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--peer", action="append", default=[], help="name=host:port")
    parser.add_argument("--mode", choices=["hamok", "raw"], default="hamok")
    parser.add_argument("--secret", default=os.environ.get("HAMOK_SECRET", ""))
    parser.add_argument("--separated", action="store_true")
    parser.add_argument("--peer-max-idle-ms", type=int, default=0)
    parser.add_argument("--compaction-entries", type=int, default=0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {args.id} %(name)s %(message)s")
    logging.getLogger("pysyncobj").setLevel(logging.ERROR)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
