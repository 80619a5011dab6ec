"""Replays the recorded monitor frames of ../shared/fixtures against a running observer, and
reads back what its FileSink wrote. Shared by the end-to-end, cluster and benchmark code."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.shared_paths import FIXTURES, MANIFEST

MANIFEST_DATA: dict[str, Any] = json.loads(MANIFEST.read_text())


def scenario_files(scenario: str) -> list[dict[str, Any]]:
    files = [f for f in MANIFEST_DATA["files"] if f["scenario"] == scenario]
    return sorted(files, key=lambda f: f["order"])


def frame_bytes(entry: dict[str, Any]) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


def rest_path(path_query: str) -> str:
    return path_query if path_query.startswith("/rest/") else "/rest" + path_query


def ws_path(path_query: str) -> str:
    return path_query[len("/rest"):] if path_query.startswith("/rest/") else path_query


async def replay(
    scenario: str,
    base_url: Callable[[dict[str, Any]], str] | str,
    *,
    transport: str | None = None,
    session: aiohttp.ClientSession,
) -> None:
    """Send a scenario's frames in their recorded order. ``transport`` forces "ws" or "rest" for
    every frame (same bytes, other path prefix). ``base_url`` may pick a daemon per frame."""
    sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
    try:
        for entry in scenario_files(scenario):
            url = base_url(entry) if callable(base_url) else base_url
            mode = transport or entry["transport"]
            data = frame_bytes(entry)
            if mode == "ws":
                key = f"{entry['connection']}@{url}"
                ws = sockets.get(key)
                if ws is None:
                    ws = sockets[key] = await session.ws_connect(url.replace("http", "ws", 1) + ws_path(
                        entry["pathQuery"]))
                await ws.send_bytes(data)
            else:
                async with session.post(url + rest_path(entry["pathQuery"]), data=data,
                                        headers={"Content-Type": "application/octet-stream"}) as resp:
                    assert resp.status == 200, await resp.text()
            await asyncio.sleep(0.005)
    finally:
        for ws in sockets.values():
            await ws.close()


def read_reports(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        if path.exists():
            out.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    return out


def event_counts(reports: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(
        r["payload"]["name"] for r in reports if r["type"] in ("CALL_EVENT", "SFU_EVENT")
    )
