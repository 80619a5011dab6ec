"""Load generator: replays the recorded JSON client frames of the shared fixtures as many rooms,
one websocket per client, with the clients of each room spread over the daemons of a cluster.

    python examples/cluster/loadgen.py --targets 127.0.0.1:7080,127.0.0.1:7180,127.0.0.1:7280 \\
        --rooms 6 --rate 30 --duration 10

Every room is a copy of one fixture room (p2p-json or sfu-json: 3 clients each). Its ids are
rewritten per room (every UUID keeps its first 20 hex digits and gets a 12-digit room tag, the
room id becomes ``loadgen-<run>-<n>``), so the clients of one room still reference each other
and rooms never share an id. Client ``i`` of room ``r`` connects to target ``(r + i) mod
len(targets)``; it sends its fixture frames in their recorded order, over and over, with the
sample timestamps set to the send time. ``--rate`` bounds the frames per second of all clients
together; after ``--duration`` seconds every websocket is closed and a summary is printed.

Fixtures: ``<repo>/../shared/fixtures`` or ``$OBSERVER_SHARED_DIR/fixtures``. Exit code 1 when a
connection failed or a daemon closed one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TARGETS = ("127.0.0.1:7080", "127.0.0.1:7180", "127.0.0.1:7280")
DEFAULT_SERVICE_ID = "loadgen"
MAX_RATE = 10_000.0  # frames/s; a guard against typos, not a measured limit
MAX_DURATION_S = 3600.0
MAX_ROOMS = 2000
_UUID = re.compile(rb"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-)[0-9a-fA-F]{12}")


def fixtures_dir() -> Path:
    shared = Path(os.environ.get("OBSERVER_SHARED_DIR", ROOT.parent / "shared"))
    return shared / "fixtures"


# ---------------------------------------------------------------------------- templates
@attrs.frozen
class Frame:
    data: bytes
    timestamp_tokens: tuple[bytes, ...]  # b'"timestamp":<recorded value>' occurrences to set to the send time


@attrs.frozen
class ClientTemplate:
    name: str  # the fixture connection, e.g. "p2p-json/ws-1"
    media_unit_id: str
    query: str  # "format=json&schemaVersion=2.2.0"
    frames: tuple[Frame, ...]


@attrs.frozen
class RoomTemplate:
    scenario: str
    room_ids: tuple[bytes, ...]
    clients: tuple[ClientTemplate, ...]


def _js_number(value: float) -> bytes:
    """The number as the monitor's JSON.stringify wrote it (shortest round-trip form)."""
    return str(int(value)).encode() if float(value).is_integer() else repr(float(value)).encode()


def load_templates(fixtures: Path, scenarios: Sequence[str] | None = None) -> list[RoomTemplate]:
    """One template per fixture scenario that has JSON client frames sent over websocket (accepted)."""
    manifest = json.loads((fixtures / "manifest.json").read_text())
    by_connection: dict[str, dict[str, list[dict[str, Any]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for entry in manifest["files"]:
        contains = entry.get("contains") or {}
        if (entry.get("format") != "json" or entry.get("transport") != "ws" or entry.get("verdict") != "accept"
                or not contains.get("clientSamples")):
            continue
        by_connection[entry["scenario"]][entry["connection"]].append(entry)
    wanted = list(scenarios) if scenarios else sorted(by_connection)
    unknown = [name for name in wanted if name not in by_connection]
    if unknown:
        raise ValueError(f"no JSON client frames for scenario(s) {', '.join(unknown)} "
                         f"(available: {', '.join(sorted(by_connection))})")
    templates = []
    for scenario in wanted:
        clients = []
        room_ids: set[str] = set()
        for connection, entries in sorted(by_connection[scenario].items()):
            entries.sort(key=lambda e: e["orderInConnection"])
            frames = []
            for entry in entries:
                data = (fixtures / entry["file"]).read_bytes()
                tokens = {b'"timestamp":' + _js_number(ts) for ts in entry["contains"].get("sampleTimestamps", [])}
                frames.append(Frame(data, tuple(sorted(t for t in tokens if t in data))))
                room_ids.update(entry["contains"].get("roomIds", []))
            path, _, query = entries[0]["pathQuery"].partition("?")
            clients.append(ClientTemplate(connection, path.rstrip("/").rsplit("/", 1)[-1], query, tuple(frames)))
        _check_uuid_prefixes_unique(scenario, [f.data for c in clients for f in c.frames])
        templates.append(RoomTemplate(scenario, tuple(sorted(r.encode() for r in room_ids)), tuple(clients)))
    return templates


def _check_uuid_prefixes_unique(scenario: str, frames: Sequence[bytes]) -> None:
    """Rewriting keeps a UUID's first 20 hex digits: two ids of a room must not share them."""
    by_prefix: dict[bytes, set[bytes]] = collections.defaultdict(set)
    for data in frames:
        for match in _UUID.finditer(data):
            by_prefix[match.group(1).lower()].add(match.group(0).lower())
    clashes = [sorted(ids) for ids in by_prefix.values() if len(ids) > 1]
    if clashes:
        raise ValueError(f"{scenario}: ids share their first 20 hex digits, rewriting would merge them: {clashes[0]}")


def room_tag(run_id: int, room: int) -> bytes:
    return b"%04x%08x" % (run_id & 0xFFFF, room)


def room_name(run_id: int, room: int) -> str:
    return f"loadgen-{run_id:04x}-{room}"


def rewrite(data: bytes, template: RoomTemplate, tag: bytes, new_room_id: str) -> bytes:
    """The frame as sent by the same client in another room: UUIDs get the room tag, room ids the room name."""
    data = _UUID.sub(lambda m: m.group(1) + tag, data)
    for room_id in template.room_ids:
        data = data.replace(b'"' + room_id + b'"', b'"' + new_room_id.encode() + b'"')
    return data


def stamped(frame: bytes, tokens: Sequence[bytes], now_ms: int) -> bytes:
    stamp = b'"timestamp":%d' % now_ms
    for token in tokens:
        frame = frame.replace(token, stamp)
    return frame


# ---------------------------------------------------------------------------- plan and run
@attrs.frozen
class ClientPlan:
    room: int
    room_id: str
    scenario: str
    client: ClientTemplate
    target: str  # ws://host:port
    frames: tuple[Frame, ...]  # rewritten for the room

    def url(self, service_id: str) -> str:
        return f"{self.target}/samples/{quote(service_id, safe='')}/{self.client.media_unit_id}?{self.client.query}"


def normalize_target(text: str) -> str:
    text = text.strip().rstrip("/")
    if text.startswith("http://"):
        return "ws://" + text[len("http://"):]
    if text.startswith("https://"):
        return "wss://" + text[len("https://"):]
    if text.startswith(("ws://", "wss://")):
        return text
    return "ws://" + text


def plan_clients(templates: Sequence[RoomTemplate], rooms: int, targets: Sequence[str],
                 run_id: int) -> list[ClientPlan]:
    plans = []
    for room in range(rooms):
        template = templates[room % len(templates)]
        tag, name = room_tag(run_id, room), room_name(run_id, room)
        for index, client in enumerate(template.clients):
            frames = tuple(Frame(rewrite(f.data, template, tag, name), f.timestamp_tokens) for f in client.frames)
            plans.append(ClientPlan(room, name, template.scenario, client, targets[(room + index) % len(targets)],
                                    frames))
    return plans


@attrs.define
class TargetStats:
    clients: int = 0
    connected: int = 0
    frames: int = 0
    bytes: int = 0
    connect_errors: collections.Counter[str] = attrs.field(factory=collections.Counter)
    closed_by_server: collections.Counter[str] = attrs.field(factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "connected": self.connected, "frames": self.frames, "bytes": self.bytes,
                "connectErrors": dict(self.connect_errors), "closedByServer": dict(self.closed_by_server)}


@attrs.define
class Summary:
    run_id: int
    service_id: str
    duration_s: float
    rate: float
    rooms: dict[str, list[str]] = attrs.field(factory=dict)  # room id -> target of each client
    scenarios: dict[str, str] = attrs.field(factory=dict)  # room id -> fixture scenario
    targets: dict[str, TargetStats] = attrs.field(factory=dict)

    @property
    def frames(self) -> int:
        return sum(t.frames for t in self.targets.values())

    @property
    def failures(self) -> int:
        return sum(t.connect_errors.total() + t.closed_by_server.total() for t in self.targets.values())

    def as_dict(self) -> dict[str, Any]:
        return {"runId": f"{self.run_id:04x}", "serviceId": self.service_id, "durationS": round(self.duration_s, 3),
                "rate": self.rate, "frames": self.frames, "failures": self.failures, "rooms": self.rooms,
                "scenarios": self.scenarios, "targets": {k: v.as_dict() for k, v in self.targets.items()}}


async def _drain(ws: ClientConnection) -> None:
    """Reads what the daemon sends (keep-alive text frames) so its close frame is seen at once."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def run_client(plan: ClientPlan, service_id: str, *, start_at: float, interval: float, deadline: float,
                     stats: TargetStats) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    try:
        ws = await connect(plan.url(service_id), open_timeout=10, max_size=2**20, compression=None)
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        stats.connect_errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        return
    stats.connected += 1
    reader = asyncio.ensure_future(_drain(ws))
    next_at = loop.time()
    sent = 0
    closed_by_server = False
    try:
        while next_at < deadline and not reader.done():
            frame = plan.frames[sent % len(plan.frames)]
            data = stamped(frame.data, frame.timestamp_tokens, int(time.time() * 1000))
            await ws.send(data)
            sent += 1
            stats.frames += 1
            stats.bytes += len(data)
            next_at += interval
            await asyncio.wait({reader}, timeout=max(0.0, min(next_at, deadline) - loop.time()))
    except ConnectionClosed:
        closed_by_server = True
    finally:
        closed_by_server = closed_by_server or reader.done()
        if not closed_by_server:
            await ws.close()
        await asyncio.wait({reader}, timeout=5)
        reader.cancel()
    if closed_by_server:  # the daemon closed the websocket before we were done
        stats.closed_by_server[f"{ws.close_code} {ws.close_reason or ''}".strip()] += 1


async def run(*, targets: Sequence[str], rooms: int, rate: float, duration: float, service_id: str = DEFAULT_SERVICE_ID,
              scenarios: Sequence[str] | None = None, fixtures: Path | None = None, run_id: int | None = None,
              seed: int | None = None) -> Summary:
    if not targets:
        raise ValueError("at least one target is needed")
    if not 1 <= rooms <= MAX_ROOMS:
        raise ValueError(f"rooms must be in 1..{MAX_ROOMS}, got {rooms}")
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:g}] frames/s, got {rate}")
    if not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S:g}] s, got {duration}")
    rng = random.Random(seed)
    run_id = rng.randrange(0x10000) if run_id is None else run_id
    urls = [normalize_target(t) for t in targets]
    plans = plan_clients(load_templates(fixtures or fixtures_dir(), scenarios), rooms, urls, run_id)
    summary = Summary(run_id, service_id, duration, rate, targets={url: TargetStats() for url in urls})
    for p in plans:
        summary.rooms.setdefault(p.room_id, []).append(p.target)
        summary.scenarios[p.room_id] = p.scenario
        summary.targets[p.target].clients += 1
    interval = len(plans) / rate  # each client's period, so that all together send `rate` frames/s
    loop = asyncio.get_running_loop()
    begin = loop.time()
    deadline = begin + duration
    await asyncio.gather(*(
        run_client(p, service_id, start_at=begin + rng.uniform(0, min(interval, duration / 2)), interval=interval,
                   deadline=deadline, stats=summary.targets[p.target])
        for p in plans))
    summary.duration_s = loop.time() - begin
    return summary


def report(summary: Summary, *, max_rooms: int = 12) -> str:
    lines = [f"run {summary.run_id:04x}: {len(summary.rooms)} rooms, "
             f"{sum(len(t) for t in summary.rooms.values())} clients, service {summary.service_id!r}, "
             f"{summary.frames} frames in {summary.duration_s:.1f} s (limit {summary.rate:g}/s)"]
    for url, stats in summary.targets.items():
        lines.append(f"  {url}: {stats.clients} clients, {stats.connected} connected, {stats.frames} frames, "
                     f"{stats.bytes / 1e6:.1f} MB")
        lines += [f"      connect error x{n}: {why}" for why, n in stats.connect_errors.items()]
        lines += [f"      closed by the daemon x{n}: {why}" for why, n in stats.closed_by_server.items()]
    for room_id, room_targets in list(summary.rooms.items())[:max_rooms]:
        lines.append(f"  room {room_id} ({summary.scenarios[room_id]}): clients on {', '.join(room_targets)}")
    if len(summary.rooms) > max_rooms:
        lines.append(f"  ... and {len(summary.rooms) - max_rooms} more rooms")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated samples endpoints: host:port, ws://host:port or http://host:port "
                             f"(default {','.join(DEFAULT_TARGETS)}, the ports of examples/cluster/run.py)")
    parser.add_argument("--rooms", type=int, default=6, help="rooms to simulate (default 6, 3 clients each)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second, all clients together (default 30)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to send (default 10)")
    parser.add_argument("--service-id", default=DEFAULT_SERVICE_ID,
                        help=f"serviceId path segment (default {DEFAULT_SERVICE_ID})")
    parser.add_argument("--scenarios", help="fixture scenarios to copy rooms from (default: every JSON one)")
    parser.add_argument("--seed", type=int, help="seed for the run id and the start offsets")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    targets = [t for t in args.targets.split(",") if t.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",")] if args.scenarios else None
    try:
        summary = asyncio.run(run(targets=targets, rooms=args.rooms, rate=args.rate, duration=args.duration,
                                  service_id=args.service_id, scenarios=scenarios, seed=args.seed))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=1) if args.json else report(summary))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
