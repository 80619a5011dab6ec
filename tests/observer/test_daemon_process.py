"""The observer as a real process: the CLI starts it, SIGTERM stops it gracefully (stop
accepting, flush the pipeline and the sinks, exit 0) and nothing accepted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.observer.replay import frame_bytes, rest_path, scenario_files

pytestmark = pytest.mark.processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_flushes_buffered_samples_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "reports.jsonl"
    config = tmp_path / "observer.yaml"
    # long buffers: at SIGTERM time everything is still inside the pipeline's collectors
    config.write_text(f"""
observer:
  buffers:
    samplesCollector: {{maxItems: 10000, maxTimeInMs: 60000}}
    reportsCollector: {{maxItems: 100000, maxTimeInMs: 60000}}
  sinks:
    file:
      type: FileSink
      config: {{path: "{out}"}}
""")
    port, mgmt = _free_port(), _free_port()
    env = dict(os.environ, APPLICATION_SERVER_PORT=str(port), APPLICATION_MANAGEMENT_PORT=str(mgmt))
    proc = subprocess.Popen([sys.executable, "-m", "observer", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{mgmt}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "daemon did not come up"
                await asyncio.sleep(0.1)
            entries = [e for e in scenario_files("p2p-json")]
            for entry in entries:
                async with session.post(f"http://127.0.0.1:{port}" + rest_path(entry["pathQuery"]),
                                        data=frame_bytes(entry),
                                        headers={"Content-Type": "application/octet-stream"}) as resp:
                    assert resp.status == 200
        assert not out.exists() or out.read_bytes() == b""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    reports = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    names = [r["payload"]["name"] for r in reports if r["type"] == "CALL_EVENT"]
    assert names.count("CALL_STARTED") == 1
    assert names.count("CLIENT_JOINED") == 3
    expected_tracks = sum(e["expectedSampleReports"].get("INBOUND_AUDIO_TRACK", 0) for e in entries)
    assert sum(r["type"] == "INBOUND_AUDIO_TRACK" for r in reports) == expected_tracks
