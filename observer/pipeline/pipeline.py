"""The processing pipeline: samples in, reports out (spec/observer.md §2).

``accept`` buffers frames (the samples collector: ``max_items`` frames or ``max_time_ms`` after
the first one). A flushed buffer is one batch; batches are processed one at a time, in order, by
a single task: obfuscation, grouping, call assignment, client entity updates and matching, the
lifecycle journal (the calls, clients, PCs and tracks the batch created, one replicated write), SFU
entity updates and pad attribution, then the sample reports and the lifecycle event reports. The
reports go through the reports collector to ``report_out`` in lists.

A stage that fails is logged and counted and the batch goes on without it: the sample reports are
still produced where they can be (BUG 8 fixed: the reference dropped the batch, and one exception
in the SFU branch stopped that branch for good). A sample without a callId affects only itself
(BUG 2 fixed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import attrs
from prometheus_client import CollectorRegistry

from observer.pipeline.batch import ClientBatch, ObservedClient, SfuBatch
from observer.pipeline.call_entities import update_call_entities
from observer.pipeline.calls import CallAssignment, assign_calls
from observer.pipeline.lifecycle_journal import confirm_restored, record
from observer.pipeline.metrics import (
    DROP_DEFERRED_TOO_LONG,
    DROP_INVALID,
    DROP_NO_CALL_ID,
    DROP_OVERLOAD,
    DROP_REPORTS_OUT,
    DROP_STOPPED,
    DROP_UNMATCHED_PAD,
    PipelineMetrics,
)
from observer.pipeline.obfuscation import Obfuscator
from observer.pipeline.settings import SLAVE, PipelineSettings
from observer.pipeline.sfu_entities import update_sfu_entities
from observer.reports.client import build_client_reports
from observer.reports.enrichment import PadEnrichment, RemoteTrack
from observer.reports.model import Report, ReportType
from observer.reports.sfu import build_sfu_reports
from observer.repositories import JournalEntity, JournalKey, Repositories
from observer.samples.model import ReceivedSamples, Sample

log = logging.getLogger(__name__)
T = TypeVar("T")

ReportsOut = Callable[[list[Report]], None]
ClientKey = tuple[str, str]  # (room key, clientId)

_PAD_REPORTS = (ReportType.SFU_INBOUND_RTP_PAD, ReportType.SFU_OUTBOUND_RTP_PAD)
# how long flush() waits between retries of samples whose room's call is not available yet
_DEFERRED_RETRY_S = 0.05


def _now_ms() -> int:
    return int(time.time() * 1000)


@attrs.define(slots=True, eq=False)
class _Frame:
    samples: ReceivedSamples
    count: int
    obfuscated: bool = False
    deferred: bool = False


class Pipeline:
    """Implements ``observer.samples.SamplesConsumer``. Create it inside the running event loop."""

    def __init__(
        self,
        repositories: Repositories,
        config: PipelineSettings,
        report_out: ReportsOut,
        *,
        clock: Callable[[], int] = _now_ms,
        registry: CollectorRegistry | None = None,
        reports_room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``reports_room`` is awaited before each batch: it returns when whatever ``report_out`` feeds
        can take another batch's reports (the sinks' flow control)."""
        self.repositories = repositories
        self._reports_room = reports_room
        self.settings = config
        self._report_out = report_out
        self._clock = clock
        self.metrics = PipelineMetrics(registry)
        self._obfuscator = Obfuscator(config.obfuscator)
        self._buffer: list[_Frame] = []
        self._buffered = 0
        self._buffer_timer: asyncio.TimerHandle | None = None
        self._queue: deque[list[_Frame]] = deque()
        self._pending = 0  # samples flushed into the queue and not processed yet
        self._worker: asyncio.Task[None] | None = None
        self._overloaded_in_a_row = 0
        self._deferred_since: dict[ClientKey, int] = {}
        self._reports: list[Report] = []
        self._reports_timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._room = asyncio.Event()  # set while the backlog is at most max_pending_samples
        self._room.set()
        self.metrics.queued_samples.set_function(lambda: self._buffered + self._pending)

    # ------------------------------------------------------------------ input
    def accept(self, samples: ReceivedSamples) -> None:
        count = len(samples.client_samples) + len(samples.sfu_samples)
        if count == 0:
            return
        if self._stopped:
            self.metrics.dropped.labels(DROP_STOPPED).inc(count)
            return
        self._add(_Frame(samples, count))

    async def ready(self) -> None:
        """Return when at most ``max_pending_samples`` samples are buffered or queued (at once
        when under it, stopped, or the limit is 0)."""
        limit = self.settings.max_pending_samples
        while limit and not self._stopped and self._buffered + self._pending > limit:
            self._room.clear()
            if not self._pending and not all(frame.deferred for frame in self._buffer):
                self._flush_buffer()  # nothing in process and the sources paused: do not wait for the timer
            await self._room.wait()

    def _wake_sources(self) -> None:
        limit = self.settings.max_pending_samples
        if self._stopped or not limit or self._buffered + self._pending <= limit:
            self._room.set()

    def _add(self, frame: _Frame) -> None:
        self._buffer.append(frame)
        self._buffered += frame.count
        collector = self.settings.samples_collector
        if len(self._buffer) >= collector.max_items:
            self._flush_buffer()
        elif self._buffer_timer is None:
            self._buffer_timer = asyncio.get_running_loop().call_later(collector.max_time_ms / 1000,
                                                                       self._flush_buffer)

    def _flush_buffer(self) -> None:
        if self._buffer_timer is not None:
            self._buffer_timer.cancel()
            self._buffer_timer = None
        if not self._buffer:
            return
        batch, count = self._buffer, self._buffered
        self._buffer, self._buffered = [], 0
        collector = self.settings.samples_collector
        limit = collector.overload_limit
        if limit is not None and self._pending + count > limit:
            self._overloaded_in_a_row += 1
            self.metrics.overloaded.inc()
            if self._overloaded_in_a_row >= collector.max_consecutive_overloaded:
                log.warning("pipeline overloaded %d flushes in a row: dropping %d samples",
                            self._overloaded_in_a_row, count)
                self.metrics.dropped.labels(DROP_OVERLOAD).inc(count)
                self._wake_sources()
                return
        else:
            self._overloaded_in_a_row = 0
        self._queue.append(batch)
        self._pending += count
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="observer-pipeline")

    async def _work(self) -> None:
        while self._queue:
            if self._reports_room is not None:
                await self._reports_room()
            batch = self._queue.popleft()
            try:
                await self._process(batch)
            except Exception:
                log.exception("processing a batch of %d frames failed", len(batch))
                self.metrics.batch_failures.labels("batch").inc()
            finally:
                self._pending -= sum(frame.count for frame in batch)
                self._wake_sources()

    # ------------------------------------------------------------------ output
    def emit_reports(self, reports: list[Report]) -> None:
        """Hand reports to the reports collector (the expirer's events come in here too)."""
        if not reports:
            return
        self.metrics.count_reports(reports)
        self._reports.extend(reports)
        collector = self.settings.reports_collector
        if len(self._reports) >= collector.max_items:
            self._flush_reports()
        elif self._reports_timer is None:
            self._reports_timer = asyncio.get_running_loop().call_later(collector.max_time_ms / 1000,
                                                                        self._flush_reports)

    def _flush_reports(self) -> None:
        if self._reports_timer is not None:
            self._reports_timer.cancel()
            self._reports_timer = None
        if not self._reports:
            return
        reports, self._reports = self._reports, []
        try:
            self._report_out(reports)
        except Exception:
            log.exception("report_out failed on %d reports", len(reports))
            self.metrics.dropped.labels(DROP_REPORTS_OUT).inc(len(reports))

    # ------------------------------------------------------------------ lifecycle
    async def flush(self) -> None:
        """Process everything accepted so far and hand out every report."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.deferred_samples_max_ms / 1000
        while True:
            self._flush_buffer()
            while self._worker is not None and not self._worker.done():
                await asyncio.shield(self._worker)
            if not self._buffer and not self._queue:
                break
            if all(frame.deferred for frame in self._buffer):
                if loop.time() >= deadline:
                    dropped = sum(frame.count for frame in self._buffer)
                    log.warning("dropping %d client samples whose call did not become available", dropped)
                    self.metrics.dropped.labels(DROP_DEFERRED_TOO_LONG).inc(dropped)
                    self._buffer, self._buffered = [], 0
                    self._deferred_since.clear()
                    self._wake_sources()
                    break
                await asyncio.sleep(_DEFERRED_RETRY_S)
        self._flush_reports()

    async def stop(self) -> None:
        """Stop accepting, process what was accepted, hand out the reports."""
        self._stopped = True
        self._room.set()
        await self.flush()
        if self._buffer_timer is not None:
            self._buffer_timer.cancel()
            self._buffer_timer = None

    # ------------------------------------------------------------------ processing
    async def _process(self, frames: list[_Frame]) -> None:
        started = time.perf_counter()
        now = self._clock()
        self.metrics.batches.inc()
        clients, sfus = ClientBatch(), SfuBatch()
        obfuscator = self._obfuscator
        for frame in frames:
            received = frame.samples
            if obfuscator.enabled and not frame.obfuscated:
                for sample in received.client_samples:
                    obfuscator.client_sample(sample)
                for sample in received.sfu_samples:
                    obfuscator.sfu_sample(sample)
                frame.obfuscated = True
            for sample in received.client_samples:
                clients.add(received.service_id, received.media_unit_id, sample)
            for sample in received.sfu_samples:
                sfus.add(received.service_id, received.media_unit_id, sample)
        if clients.invalid or sfus.invalid:
            self.metrics.dropped.labels(DROP_INVALID).inc(clients.invalid + sfus.invalid)
        reports: list[Report] = []
        if clients:
            reports.extend(await self._process_clients(clients, now))
        if sfus:
            reports.extend(await self._process_sfus(sfus, now))
        self.emit_reports(reports)
        self.metrics.latency.observe(time.perf_counter() - started)

    async def _process_clients(self, batch: ClientBatch, now: int) -> list[Report]:
        settings = self.settings
        events: list[Report] = []
        matches: dict[str, RemoteTrack] = {}
        deferred: list[ObservedClient] = []
        if settings.call_updater_enabled:
            assignment = await self._stage("call_assignment", assign_calls(
                self.repositories, batch.rooms, mode=settings.call_id_assign_mode, now=now,
                ended_memory=settings.room_ended_calls_memory))
            if assignment is None:
                call_of = self._own_call_ids(batch) if settings.call_id_assign_mode == SLAVE else {}
            else:
                events.extend(assignment.events)
                call_of = assignment.call_of()
                deferred = assignment.deferred
                self._count_assignment(assignment)
                result = await self._stage("call_entities", update_call_entities(
                    self.repositories, assignment.tracked, assignment.calls, now=now,
                    match_tracks=settings.match_tracks, retired=assignment.retired))
                created: list[JournalEntity] = list(assignment.created)
                restored: dict[JournalKey, JournalEntity] = dict(assignment.restored)
                if result is not None:
                    # what ended (replaced call, entities that moved) before what started
                    events[:0] = result.closed
                    events.extend(result.events)
                    matches = result.matches
                    created.extend(result.created)
                    restored.update(result.restored)
                if created or restored:
                    await self._stage("lifecycle_journal", self._journal(created, restored))
        else:
            call_of = self._own_call_ids(batch)
        deferred_keys = self._defer(deferred, now)

        reports = events
        for client in batch.clients():
            key = (client.room_key, client.client_id)
            if key in deferred_keys:
                continue
            self._deferred_since.pop(key, None)
            self.metrics.samples.labels("client").inc(len(client.samples))
            call_id = call_of.get(key)
            if call_id is None:
                self.metrics.dropped.labels(DROP_NO_CALL_ID).inc(len(client.samples))
                continue
            for sample, media_unit_id in client.samples:
                try:
                    reports.extend(build_client_reports(
                        sample, service_id=client.service_id, media_unit_id=media_unit_id, call_id=call_id,
                        matches=matches, drop_unmatched_inbound=settings.drop_unmatched_reports))
                except Exception:
                    log.exception("building the reports of a sample of client %s failed", client.client_id)
                    self.metrics.batch_failures.labels("client_reports").inc()
        return reports

    async def _process_sfus(self, batch: SfuBatch, now: int) -> list[Report]:
        settings = self.settings
        reports: list[Report] = []
        enrichment: dict[str, PadEnrichment] = {}
        result = await self._stage("sfu_entities", update_sfu_entities(
            self.repositories, batch.sfus, now=now, match_rtp_pads=settings.match_rtp_pads))
        if result is not None:
            reports.extend(result.events)
            enrichment = result.enrichment
        drops = (settings.drop_unmatched_internal_inbound_reports, settings.drop_unmatched_inbound_reports,
                 settings.drop_unmatched_outbound_reports)
        internal = {pad_id for sfu in batch.sfus.values() for pads in (sfu.inbound_pads, sfu.outbound_pads)
                    for pad_id, pad in pads.items() if pad.internal} if any(drops) else set()
        for sfu in batch.sfus.values():
            self.metrics.samples.labels("sfu").inc(len(sfu.samples))
            for sample, media_unit_id in sfu.samples:
                try:
                    built = build_sfu_reports(sample, service_id=sfu.service_id, media_unit_id=media_unit_id,
                                              pad_enrichment=enrichment)
                except Exception:
                    log.exception("building the reports of a sample of sfu %s failed", sfu.sfu_id)
                    self.metrics.batch_failures.labels("sfu_reports").inc()
                    continue
                if any(drops):
                    built = self._drop_unmatched_pads(built, enrichment, internal, *drops)
                reports.extend(built)
        return reports

    def _drop_unmatched_pads(self, reports: list[Report], enrichment: dict[str, PadEnrichment], internal: set[str],
                             drop_internal_in: bool, drop_in: bool, drop_out: bool) -> list[Report]:
        """Pad reports the observer could not attribute: internal inbound pads without the remote
        SFU's pad (dropUnmatchedInternalInboundReports), other pads without a client track
        (dropUnmatchedInboundReports / dropUnmatchedOutboundReports). A pad is internal when it or
        its transport says so."""
        kept: list[Report] = []
        for report in reports:
            if report.type in _PAD_REPORTS:
                pad_id = report.payload.get("rtpPadId")
                found = enrichment.get(pad_id) if isinstance(pad_id, str) else None
                if report.type == ReportType.SFU_INBOUND_RTP_PAD:
                    if pad_id in internal:
                        unmatched = drop_internal_in and (found is None or not found.has_remote)
                    else:
                        unmatched = drop_in and (found is None or found.client_id is None)
                else:
                    unmatched = drop_out and pad_id not in internal and (found is None or found.client_id is None)
                if unmatched:
                    self.metrics.dropped.labels(DROP_UNMATCHED_PAD).inc()
                    continue
            kept.append(report)
        return kept

    async def _stage(self, name: str, work: Awaitable[T]) -> T | None:
        try:
            return await work
        except Exception:
            log.exception("pipeline stage %s failed; the batch goes on without it", name)
            self.metrics.batch_failures.labels(name).inc()
            return None

    @staticmethod
    def _own_call_ids(batch: ClientBatch) -> dict[ClientKey, str]:
        return {(c.room_key, c.client_id): c.call_id for c in batch.clients() if c.call_id is not None}

    async def _journal(self, created: list[JournalEntity], restored: dict[JournalKey, JournalEntity]) -> None:
        await record(self.repositories, created)
        for key in restored:
            self.metrics.restored.labels(key[0]).inc()
        await confirm_restored(self.repositories, restored)

    def _count_assignment(self, assignment: CallAssignment) -> None:
        if assignment.untracked:
            self.metrics.untracked.inc(len(assignment.untracked))
        for client in assignment.no_call_id:
            log.warning("client %s of room %s sent no callId (callIdAssignMode slave): its samples are dropped",
                        client.client_id, client.room_id)

    def _defer(self, clients: Iterable[ObservedClient], now: int) -> set[ClientKey]:
        """Queue the samples of clients whose room's call is not available again, for a later
        batch, until ``deferred_samples_max_ms`` passed since they were first deferred."""
        keys: set[ClientKey] = set()
        frames: dict[tuple[str, str], list[Sample]] = {}
        limit = self.settings.deferred_samples_max_ms
        for client in clients:
            key = (client.room_key, client.client_id)
            keys.add(key)
            since = self._deferred_since.setdefault(key, now)
            if now - since > limit:
                log.warning("no call for room %s within %d ms: dropping %d samples of client %s",
                            client.room_id, limit, len(client.samples), client.client_id)
                self.metrics.dropped.labels(DROP_DEFERRED_TOO_LONG).inc(len(client.samples))
                del self._deferred_since[key]
                continue
            self.metrics.deferred.inc(len(client.samples))
            for sample, media_unit_id in client.samples:
                frames.setdefault((client.service_id, media_unit_id), []).append(sample)
        for (service_id, media_unit_id), samples in frames.items():
            received = ReceivedSamples(service_id, media_unit_id, samples, [], now)
            self._add(_Frame(received, len(samples), obfuscated=True, deferred=True))
        return keys
