"""LoggerSink: writes a count of the reports (and optionally every report) to the log."""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from observer.reports.model import Report
from observer.sinks.base import BatchSettings, SendOutcome, Sink
from observer.sinks.settings import ConfigReader

TRACE = 5
_LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR}


class LoggerSink(Sink):
    """Config: ``logLevel`` (TRACE|DEBUG|INFO|WARN|ERROR, INFO), ``printTypeSummary`` (true),
    ``printReports`` (false; when true every report envelope is logged as one JSON line)."""

    type_name = "LoggerSink"
    default_batch = BatchSettings(max_batch_size=1000, max_batch_delay=0.1, max_retries=0)

    def __init__(self, name: str, *, level: int = logging.INFO, print_type_summary: bool = True,
                 print_reports: bool = False, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, batch, registry)
        self.level = level
        self.print_type_summary = print_type_summary
        self.print_reports = print_reports

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None,
                    registry: CollectorRegistry | None = None) -> LoggerSink:
        reader = ConfigReader(config, f"observer.sinks.{name}.config")
        level = reader.choice("logLevel", _LEVELS, "INFO")
        sink = cls(
            name,
            level=_LEVELS[level],
            print_type_summary=reader.boolean("printTypeSummary", True),
            print_reports=reader.boolean("printReports", False),
            batch=BatchSettings.read(reader, cls.default_batch),
            registry=registry,
        )
        reader.finish()
        return sink

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        if not self.log.isEnabledFor(self.level):
            return None
        self.log.log(self.level, "Number of reports are: %d", len(batch))
        if self.print_type_summary:
            for report_type, count in collections.Counter(r.type for r in batch).items():
                self.log.log(self.level, "Received number of reports of %s: %d", report_type.value, count)
        if self.print_reports:
            for report in batch:
                self.log.log(self.level, "%s", report.to_json().decode())
        return None
