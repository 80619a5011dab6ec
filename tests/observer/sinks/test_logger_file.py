"""LoggerSink and FileSink."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from observer.sinks import build_sink
from tests.observer.sinks.reports import all_types, counts, many
from tests.observer.sinks.servers import wait_until


def directory(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


async def test_logger_prints_summary_and_every_report(caplog: pytest.LogCaptureFixture,
                                                      registry: CollectorRegistry) -> None:
    sink = build_sink("log", "LoggerSink", {"logLevel": "WARN", "printReports": True, "maxBatchDelayMs": 10},
                      registry)
    reports = all_types()
    with caplog.at_level(logging.INFO, logger="observer.sinks.log"):
        await sink.start()
        sink.submit(reports)
        await sink.stop(2)
    messages = [r.getMessage() for r in caplog.records if r.name == "observer.sinks.log"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "observer.sinks.log")
    assert "Number of reports are: 18" in messages
    assert "Received number of reports of ICE_CANDIDATE_PAIR: 1" in messages
    printed = [orjson.loads(m) for m in messages if m.startswith("{")]
    assert printed == [r.to_envelope() for r in reports]
    assert counts(registry, "log")["sent"] == 18


async def test_logger_defaults_print_only_the_summary(caplog: pytest.LogCaptureFixture) -> None:
    sink = build_sink("log2", "LoggerSink", {"maxBatchDelayMs": 10})
    with caplog.at_level(logging.INFO, logger="observer.sinks.log2"):
        await sink.start()
        sink.submit(many(3))
        await sink.stop(2)
    messages = [r.getMessage() for r in caplog.records if r.name == "observer.sinks.log2"]
    assert messages == ["Number of reports are: 3", "Received number of reports of CALL_EVENT: 3"]


async def test_file_sink_writes_one_envelope_per_line_within_a_second(tmp_path: Path,
                                                                      registry: CollectorRegistry) -> None:
    path = tmp_path / "out" / "reports.jsonl"
    sink = build_sink("file", "FileSink", {"path": str(path)}, registry)
    await sink.start()
    reports = all_types()
    sink.submit(reports)
    # visible to a reader while the sink is still running
    await wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") == 18, timeout=1.0)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [r.to_envelope() for r in reports]
    await sink.stop(1)
    assert counts(registry, "file")["sent"] == 18


async def test_file_sink_rotates_by_size_and_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    line_size = len(many(1)[0].to_json()) + 1
    sink = build_sink("rot", "FileSink", {"path": str(path), "maxBytes": line_size * 3, "backupCount": 2,
                                          "maxBatchDelayMs": 0})
    await sink.start()
    reports = many(10)
    sink.submit(reports)
    await sink.stop(2)
    files = directory(tmp_path)
    assert list(files) == ["reports.jsonl", "reports.jsonl.1", "reports.jsonl.2"]
    # 10 lines, 3 per file: the oldest file was rotated away, the newest holds the last line
    assert [len(files[name].splitlines()) for name in ("reports.jsonl.2", "reports.jsonl.1", "reports.jsonl")] \
        == [3, 3, 1]
    assert all(len(content) <= line_size * 3 for content in files.values())
    last = orjson.loads(files["reports.jsonl"])
    assert last["payload"]["clientId"] == reports[-1].payload["clientId"]


async def test_file_sink_without_max_bytes_appends_forever(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_bytes(b"existing\n")
    sink = build_sink("app", "FileSink", {"path": str(path), "maxBatchDelayMs": 0})
    await sink.start()
    for _ in range(5):
        sink.submit(many(100))
    await sink.stop(2)
    files = directory(tmp_path)
    assert list(files) == ["reports.jsonl"]
    assert len(files["reports.jsonl"].splitlines()) == 501


async def test_file_sink_unwritable_path_counts_failures_without_raising(tmp_path: Path,
                                                                         registry: CollectorRegistry) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = build_sink("bad", "FileSink", {"path": str(blocker / "reports.jsonl"), "maxRetries": 1,
                                          "maxRetryBackoffMs": 10, "maxBatchDelayMs": 0}, registry)
    await sink.start()
    sink.submit(many(4))
    await wait_until(lambda: counts(registry, "bad")["failed"] == 4)
    await sink.stop(1)
