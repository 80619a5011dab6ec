"""FileSink: one report envelope JSON per line, appended to a file with size-based rotation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry

from observer.reports.model import Report
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.settings import ConfigReader


class FileSink(Sink):
    """Config: ``path`` (required), ``maxBytes`` (rotate when the file would grow past it; 0 = never),
    ``backupCount`` (rotated files kept as path.1 … path.N; 0 = the file is truncated instead).

    Each batch is written with one unbuffered write, so what is written is on disk (in the page cache)
    within ``maxBatchDelayMs`` (200 ms by default, never more than 1 s) of being submitted. A single line
    longer than ``maxBytes`` gets a file of its own."""

    type_name = "FileSink"
    default_batch = BatchSettings(max_batch_size=1000, max_batch_delay=0.2, max_retries=5)

    def __init__(self, name: str, path: str | os.PathLike[str], *, max_bytes: int = 0, backup_count: int = 0,
                 batch: BatchSettings | None = None, registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._file: IO[bytes] | None = None
        self._size = 0

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> FileSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        path = reader.string("path", allow_empty=False)
        batch = BatchSettings.read(reader, cls.default_batch)
        if batch.max_batch_delay > 1.0:
            raise reader.error("maxBatchDelayMs", "must be <= 1000 (a FileSink writes at least every second)")
        sink = cls(name, path, max_bytes=reader.integer("maxBytes", 0, minimum=0),
                   backup_count=reader.integer("backupCount", 0, minimum=0), batch=batch, registry=registry)
        reader.finish()
        return sink

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a local open is quick; the file stays open across batches
        self._file = open(self.path, "ab", buffering=0)  # noqa: ASYNC230
        self._size = self._file.tell()

    async def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _reset_after(self, error: BaseException) -> bool:
        return True

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        assert self._file is not None
        written = 0  # reports already on disk, so a failure halfway retries only the rest
        chunk: list[bytes] = []
        chunk_size = 0
        try:
            for report in batch:
                line = report.to_json() + b"\n"
                pending = self._size + chunk_size
                if self.max_bytes and pending and pending + len(line) > self.max_bytes:
                    self._write(chunk)
                    written += len(chunk)
                    chunk, chunk_size = [], 0
                    self._rotate()
                chunk.append(line)
                chunk_size += len(line)
            self._write(chunk)
        except OSError as exc:
            if not written:
                raise
            return SendOutcome(retry=batch[written:], error=exc)
        return None

    def _write(self, chunk: list[bytes]) -> None:
        if chunk and self._file is not None:
            data = b"".join(chunk)
            view = memoryview(data)
            while view:
                count = self._file.write(view)
                if not count:
                    raise OSError(f"short write to {self.path}")
                view = view[count:]
            self._size += len(data)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        if self.backup_count > 0:
            for index in range(self.backup_count - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self._file = open(self.path, "ab", buffering=0)
        else:
            self._file = open(self.path, "wb", buffering=0)
        self._size = 0
