"""Prometheus collectors of the pipeline and the expirer (on the given registry, never the global one)."""

from __future__ import annotations

import collections
from operator import attrgetter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from observer.reports.events import CallEventName, SfuEventName
from observer.reports.model import Report, ReportType

_EVENT_TYPES = frozenset((ReportType.CALL_EVENT, ReportType.SFU_EVENT))
_TYPE_OF = attrgetter("type")
_STANDARD_EVENTS = frozenset(n.value for n in CallEventName) | frozenset(n.value for n in SfuEventName)
CUSTOM_EVENT = "custom"  # custom event names are client-chosen: one label keeps the cardinality bounded

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# drop reasons
DROP_OVERLOAD = "overload"
DROP_STOPPED = "stopped"
DROP_INVALID = "invalid_sample"
DROP_NO_CALL_ID = "no_call_id"
DROP_DEFERRED_TOO_LONG = "no_call_in_time"
DROP_UNMATCHED_PAD = "unmatched_sfu_pad"
DROP_REPORTS_OUT = "report_out_failed"


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.batches = Counter("observertc_pipeline_batches", "Batches processed", registry=reg)
        self.batch_failures = Counter("observertc_pipeline_batch_failures",
                                      "Batch stages that failed (logged; the batch went on without them)",
                                      ["stage"], registry=reg)
        self.samples = Counter("observertc_pipeline_samples", "Samples processed", ["kind"], registry=reg)
        self.dropped = Counter("observertc_pipeline_dropped", "Samples or reports dropped, by reason",
                               ["reason"], registry=reg)
        self.deferred = Counter("observertc_pipeline_deferred_samples",
                                "Client samples retried later because their room's call was not available",
                                registry=reg)
        self.untracked = Counter("observertc_pipeline_untracked_clients",
                                 "Clients reported without entity tracking (stale callId in slave mode)",
                                 registry=reg)
        self.restored = Counter("observertc_pipeline_restored_entities",
                                "Calls, clients, PCs and client tracks re-created from the lifecycle journal "
                                "(their daemon was lost), by journal kind", ["kind"], registry=reg)
        self.overloaded = Counter("observertc_pipeline_overloaded_flushes",
                                  "Sample buffer flushes that found the pipeline behind", registry=reg)
        self.latency = Histogram("observertc_pipeline_latency_seconds", "Processing time of one batch",
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.reports = Counter("observertc_pipeline_reports", "Reports produced, by type", ["type"], registry=reg)
        self.events = Counter("observertc_pipeline_events", "Event reports produced, by name", ["name"],
                              registry=reg)
        self.queued_samples = Gauge("observertc_pipeline_queued_samples",
                                    "Samples accepted and not processed yet", registry=reg)

    def count_reports(self, reports: list[Report]) -> None:
        per_type = collections.Counter(map(_TYPE_OF, reports))  # counted in C: ~13 reports per client sample
        if not _EVENT_TYPES.isdisjoint(per_type):
            for report in reports:
                if report.type in _EVENT_TYPES:
                    name = report.payload.get("name")
                    self.events.labels(name if name in _STANDARD_EVENTS else CUSTOM_EVENT).inc()
        for report_type, count in per_type.items():
            self.reports.labels(report_type.value).inc(count)


class RepositoryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.entries = Gauge("observertc_repository_entries", "Entities per storage (whole grid)", ["storageId"],
                             registry=reg)
        self.passes = Counter("observertc_repository_expiry_passes", "Expiry passes run (leader only)",
                              ["succeeded"], registry=reg)
        self.expired = Counter("observertc_repository_expired_entries", "Entities removed by the expirer",
                               ["storageId"], registry=reg)
        self.lost_ended = Counter("observertc_repository_lost_entities_ended",
                                  "Entities ended from the lifecycle journal after their daemon was lost, "
                                  "by journal kind", ["kind"], registry=reg)
        self.pass_seconds = Histogram("observertc_repository_expiry_pass_seconds", "Duration of one expiry pass",
                                      buckets=LATENCY_BUCKETS, registry=reg)
