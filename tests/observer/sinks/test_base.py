"""The shared sink machinery: queue, batching, retries, partial outcomes, stop, fan-out, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from observer.reports.model import Report, ReportType
from observer.sinks import BatchSettings, PermanentSinkError, SendOutcome, Sink, SinkGroup
from tests.observer.sinks.reports import all_types, counts, many, metric
from tests.observer.sinks.servers import wait_until

FAST = BatchSettings(queue_size=100, max_batch_size=10, max_batch_delay=0.01, max_retries=3,
                     initial_backoff=0.01, max_backoff=0.02)


class RecordingSink(Sink):
    """Records batches; fails the first ``fail_sends`` sends; ``open_failures`` fails the first opens;
    ``gate`` (when set) blocks every send until it is set."""

    type_name = "RecordingSink"

    def __init__(self, name: str, registry: CollectorRegistry, batch: BatchSettings = FAST, *,
                 fail_sends: int = 0, open_failures: int = 0) -> None:
        super().__init__(name, batch, registry)
        self.batches: list[list[Report]] = []
        self.fail_sends = fail_sends
        self.open_failures = open_failures
        self.opens = 0
        self.closes = 0
        self.gate: asyncio.Event | None = None
        self.outcomes: list[SendOutcome] = []

    @property
    def received(self) -> list[Report]:
        return [r for b in self.batches for r in b]

    async def _open(self) -> None:
        self.opens += 1
        if self.open_failures:
            self.open_failures -= 1
            raise ConnectionRefusedError("server down")

    async def _close(self) -> None:
        self.closes += 1

    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_sends:
            self.fail_sends -= 1
            raise ConnectionResetError("boom")
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            delivered = [r for r in batch if all(r is not x for x in outcome.retry)
                         and all(r is not x for x in outcome.failed)]
            self.batches.append(delivered)
            return outcome
        self.batches.append(list(batch))
        return None


async def test_batches_respect_max_size_and_arrive_in_order(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry)
    await sink.start()
    reports = many(35)
    sink.submit(reports[:20])
    sink.submit(reports[20:])
    await wait_until(lambda: len(sink.received) == 35)
    await sink.stop(1)
    assert [r.payload["clientId"] for r in sink.received] == [r.payload["clientId"] for r in reports]
    assert max(len(b) for b in sink.batches) == 10
    assert counts(registry, "rec")["sent"] == 35


async def test_batch_waits_for_more_reports_up_to_the_max_delay(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, BatchSettings(max_batch_size=100, max_batch_delay=0.3))
    await sink.start()
    started = time.monotonic()
    sink.submit(many(3))
    await asyncio.sleep(0.05)
    sink.submit(many(2))
    await wait_until(lambda: sink.batches)
    assert time.monotonic() - started >= 0.25
    assert [len(b) for b in sink.batches] == [5]
    await sink.stop(1)


async def test_submit_never_blocks_and_overflow_is_counted(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry)
    sink.gate = asyncio.Event()
    await sink.start()
    started = time.perf_counter()
    for _ in range(30):
        sink.submit(many(10))
    assert time.perf_counter() - started < 0.5
    # the queue holds 100 reports; the worker has not run yet, so the other 200 are dropped
    assert metric(registry, "observertc_sink_reports_dropped_total", "rec", reason="queue_full") == 200
    await asyncio.sleep(0.05)
    assert metric(registry, "observertc_sink_queue_depth", "rec") == 90  # 10 in flight
    sink.gate.set()
    await wait_until(lambda: len(sink.received) == 100)
    await sink.stop(1)
    assert counts(registry, "rec")["sent"] == 100


async def test_failed_send_is_retried_then_delivered(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, fail_sends=2)
    await sink.start()
    sink.submit(many(5))
    await wait_until(lambda: len(sink.received) == 5)
    await sink.stop(1)
    c = counts(registry, "rec")
    assert (c["sent"], c["failed"], c["retried"]) == (5, 0, 10)


async def test_batch_is_given_up_after_max_retries_and_the_next_one_goes_through(
        registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, fail_sends=4)  # 1 try + 3 retries
    await sink.start()
    sink.submit(many(5))
    await wait_until(lambda: counts(registry, "rec")["failed"] == 5)
    sink.submit(many(3))
    await wait_until(lambda: len(sink.received) == 3)
    await sink.stop(1)
    c = counts(registry, "rec")
    assert (c["sent"], c["failed"], c["retried"]) == (3, 5, 15)


async def test_permanent_error_is_not_retried(registry: CollectorRegistry) -> None:
    class Rejecting(RecordingSink):
        async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
            raise PermanentSinkError("bad request")

    sink = Rejecting("rec", registry)
    await sink.start()
    sink.submit(many(4))
    await wait_until(lambda: counts(registry, "rec")["failed"] == 4)
    await sink.stop(1)
    assert counts(registry, "rec")["retried"] == 0


async def test_partial_outcome_retries_only_the_rest_and_counts_each_part(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry)
    reports = many(6)
    sink.outcomes.append(SendOutcome(retry=reports[4:], failed=reports[3:4], dropped={"too_large": 1}))
    await sink.start()
    sink.submit(reports)
    await wait_until(lambda: len(sink.batches) == 2)
    await sink.stop(1)
    # first attempt: 0-2 taken (one of them dropped, as the sink said), 3 failed, 4-5 retried and delivered
    assert [len(b) for b in sink.batches] == [3, 2]
    assert sink.batches[1] == reports[4:]
    c = counts(registry, "rec")
    assert (c["sent"], c["failed"], c["dropped"], c["retried"]) == (4, 1, 1, 2)


async def test_start_with_unreachable_server_does_not_raise_and_connects_later(
        registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, BatchSettings(max_batch_delay=0.01, max_retries=10,
                                                         initial_backoff=0.01, max_backoff=0.05),
                         open_failures=5)
    await sink.start()
    assert not sink.connected
    sink.submit(many(3))
    await wait_until(lambda: len(sink.received) == 3)
    assert sink.connected
    assert sink.opens == 6
    assert metric(registry, "observertc_sink_connected", "rec") == 1
    await sink.stop(1)
    assert metric(registry, "observertc_sink_connected", "rec") == 0


async def test_connects_before_the_first_report(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, BatchSettings(initial_backoff=0.01, max_backoff=0.05), open_failures=3)
    await sink.start()
    await wait_until(lambda: sink.connected)
    assert sink.opens == 4
    assert counts(registry, "rec")["sent"] == 0
    await sink.stop(1)


async def test_stop_flushes_the_queue(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry, BatchSettings(max_batch_size=10, max_batch_delay=5))
    await sink.start()
    sink.submit(many(25))
    await sink.stop(2)
    assert len(sink.received) == 25
    assert sink.closes == 1
    sink.submit(many(2))
    assert metric(registry, "observertc_sink_reports_dropped_total", "rec", reason="stopped") == 2


async def test_stop_is_bounded_and_counts_what_is_left(registry: CollectorRegistry) -> None:
    sink = RecordingSink("rec", registry)
    sink.gate = asyncio.Event()  # the server never answers
    await sink.start()
    sink.submit(many(30))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await sink.stop(0.3)
    assert time.monotonic() - started < 1.5
    assert metric(registry, "observertc_sink_reports_dropped_total", "rec", reason="shutdown") == 30
    assert metric(registry, "observertc_sink_queue_depth", "rec") == 0


async def test_group_filters_per_sink_and_a_stuck_sink_does_not_block_the_others(
        registry: CollectorRegistry) -> None:
    stuck = RecordingSink("stuck", registry)
    stuck.gate = asyncio.Event()
    roomy = BatchSettings(queue_size=1000, max_batch_size=100, max_batch_delay=0.01)
    calls_only = RecordingSink("calls", registry, roomy)
    by_callable = RecordingSink("sfu", registry, roomy)
    everything = RecordingSink("all", registry, roomy)
    group = SinkGroup()
    group.add(stuck)
    group.add(calls_only, {ReportType.CALL_EVENT, ReportType.CALL_META_DATA})
    group.add(by_callable, lambda t: t.value.startswith("SFU_"))
    group.add(everything)
    with pytest.raises(ValueError, match="already"):
        group.add(RecordingSink("all", CollectorRegistry()))
    await group.start()
    started = time.perf_counter()
    for _ in range(20):
        group.dispatch(all_types())
    assert time.perf_counter() - started < 0.5
    await wait_until(lambda: len(everything.received) == 360)
    await wait_until(lambda: len(calls_only.received) == 40 and len(by_callable.received) == 140)
    assert {r.type for r in calls_only.received} == {ReportType.CALL_EVENT, ReportType.CALL_META_DATA}
    assert all(r.type.value.startswith("SFU_") for r in by_callable.received)
    await group.stop(0.3)
    assert metric(registry, "observertc_sink_reports_dropped_total", "stuck", reason="shutdown") > 0


def test_metrics_of_several_sinks_share_one_registry(registry: CollectorRegistry) -> None:
    RecordingSink("a", registry)
    RecordingSink("b", registry)
    text = generate_latest(registry).decode()
    for name in ("observertc_sink_reports_sent_total", "observertc_sink_reports_failed_total",
                 "observertc_sink_reports_retried_total", "observertc_sink_queue_depth",
                 "observertc_sink_batch_seconds_bucket", "observertc_sink_connected"):
        assert f'{name}{{' in text, name
    assert 'observertc_sink_queue_depth{sink="b"} 0.0' in text


async def test_a_delivering_sink_takes_a_burst_and_room_waits_for_its_queue(registry: CollectorRegistry) -> None:
    """Reports beyond the queue size are kept while the sink delivers; ``room`` holds the producer back
    until the queue is below half (a burst into a fast, healthy sink once lost reports)."""
    sink = RecordingSink("rec", registry, BatchSettings(queue_size=100, max_batch_size=10, max_batch_delay=0.01))
    sink.gate = asyncio.Event()
    await sink.start()
    await wait_until(lambda: sink.connected)
    sink.submit(many(10))
    await wait_until(lambda: sink.queue_depth == 0)  # the worker holds them in its (gated) send
    sink.submit(many(250))
    assert sink.queue_depth == 250
    waiting = asyncio.ensure_future(sink.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    sink.gate.set()
    await asyncio.wait_for(waiting, 2)
    assert sink.queue_depth < 50
    await wait_until(lambda: len(sink.received) == 260)
    await sink.stop(1)
    assert metric(registry, "observertc_sink_reports_dropped_total", "rec", reason="queue_full") == 0


async def test_a_stalled_or_failing_sink_is_not_waited_for_and_overflows(registry: CollectorRegistry) -> None:
    settings = BatchSettings(queue_size=20, max_batch_size=10, max_batch_delay=0.01, stalled_send=0.2,
                             max_retries=50, initial_backoff=0.05, max_backoff=0.05)
    stalled = RecordingSink("stalled", registry, settings)
    stalled.gate = asyncio.Event()
    await stalled.start()
    await wait_until(lambda: stalled.connected)
    stalled.submit(many(10))
    await wait_until(lambda: stalled.queue_depth == 0)
    stalled.submit(many(15))  # kept: the send in flight is young
    await asyncio.wait_for(stalled.room(), 1)  # returns once that send counts as stalled
    assert not stalled.delivering
    stalled.submit(many(15))
    assert metric(registry, "observertc_sink_reports_dropped_total", "stalled", reason="queue_full") == 10
    stalled.gate.set()
    await stalled.stop(1)

    failing = RecordingSink("failing", registry, settings, fail_sends=1000)
    await failing.start()
    await wait_until(lambda: failing.connected)
    failing.submit(many(10))
    await wait_until(lambda: metric(registry, "observertc_sink_reports_retried_total", "failing") > 0)
    assert not failing.delivering
    failing.submit(many(30))
    await asyncio.wait_for(failing.room(), 0.5)
    assert metric(registry, "observertc_sink_reports_dropped_total", "failing", reason="queue_full") == 10
    await failing.stop(0.2)
