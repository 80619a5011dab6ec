"""Buffers, ordering, graceful shutdown, failure isolation and metrics of the pipeline (spec §2.1, BUG 8)."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from observer.pipeline import CollectorSettings, Pipeline, PipelineSettings
from observer.reports.model import Report, ReportType
from observer.repositories import Repositories
from tests.observer.test_pipeline_support import (
    T0,
    Clock,
    Harness,
    YieldingStorage,
    client_sample,
    event_counts,
    of_type,
    received,
    sfu_sample,
    track,
)


def _sample(client_id: str = "a", ts: int = T0):
    return client_sample(client_id, "room", ts, pc_ids=["pc"], outbound_audio=[track(f"t-{client_id}", "pc", 1)])


def _pipeline(settings: PipelineSettings, repos: Repositories | None = None,
              registry: CollectorRegistry | None = None) -> tuple[Pipeline, list[list[Report]]]:
    batches: list[list[Report]] = []
    pipeline = Pipeline(repos or Repositories.in_memory(), settings, batches.append, clock=Clock(),
                        registry=registry)
    return pipeline, batches


async def _until(predicate, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


async def test_samples_buffer_flushes_at_max_items() -> None:
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=2, max_time_ms=60_000),
                                reports_collector=CollectorSettings(max_items=1, max_time_ms=60_000))
    pipeline, batches = _pipeline(settings)
    pipeline.accept(received([_sample("a")]))
    await asyncio.sleep(0.02)
    assert batches == [] and pipeline.metrics.batches._value.get() == 0
    pipeline.accept(received([_sample("b")]))
    await _until(lambda: pipeline.metrics.batches._value.get() == 1)
    assert len(of_type([r for b in batches for r in b], ReportType.OUTBOUND_AUDIO_TRACK)) == 2


async def test_samples_and_reports_buffers_flush_after_max_time() -> None:
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=100, max_time_ms=10),
                                reports_collector=CollectorSettings(max_items=10_000, max_time_ms=10))
    pipeline, batches = _pipeline(settings)
    pipeline.accept(received([_sample()]))
    await _until(lambda: bool(batches))
    reports = [r for b in batches for r in b]
    assert event_counts(reports)["CALL_STARTED"] == 1


async def test_reports_collector_hands_out_lists_at_max_items() -> None:
    settings = PipelineSettings(reports_collector=CollectorSettings(max_items=3, max_time_ms=60_000))
    pipeline, batches = _pipeline(settings)
    pipeline.emit_reports([Report(ReportType.CALL_EVENT, {"name": "X"})] * 2)
    assert batches == []
    pipeline.emit_reports([Report(ReportType.CALL_EVENT, {"name": "X"})])
    assert [len(b) for b in batches] == [3]


async def test_stop_processes_everything_accepted_and_refuses_more() -> None:
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=1000, max_time_ms=60_000),
                                reports_collector=CollectorSettings(max_items=10_000, max_time_ms=60_000))
    pipeline, batches = _pipeline(settings)
    for i in range(5):
        pipeline.accept(received([_sample(f"c{i}")]))
    await pipeline.stop()
    reports = [r for b in batches for r in b]
    assert len(of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 5
    pipeline.accept(received([_sample("late")]))
    assert pipeline.metrics.dropped.labels("stopped")._value.get() == 1


async def test_batches_are_processed_one_at_a_time_in_order() -> None:
    inner = Repositories.build(lambda kind: YieldingStorage(kind.storage_id))
    active = 0
    most = 0
    original = inner.rooms.get_all

    async def tracking_get_all(keys: Any) -> Any:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.005)
        try:
            return await original(keys)
        finally:
            active -= 1

    inner.rooms.get_all = tracking_get_all  # type: ignore[method-assign]
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=1, max_time_ms=0))
    pipeline, batches = _pipeline(settings, inner)
    for i in range(6):
        pipeline.accept(received([_sample("a", T0 + i)]))
    await pipeline.flush()
    assert most == 1
    assert pipeline.metrics.batches._value.get() == 6
    timestamps = [p["timestamp"] for b in batches for p in of_type(b, ReportType.OUTBOUND_AUDIO_TRACK)]
    assert timestamps == sorted(timestamps) and len(timestamps) == 6


async def test_overload_guard_drops_batches_after_consecutive_overloads() -> None:
    slow = Repositories.build(lambda kind: YieldingStorage(kind.storage_id))
    original = slow.rooms.get_all
    gate = asyncio.Event()

    async def blocked_get_all(keys: Any) -> Any:
        await gate.wait()
        return await original(keys)

    slow.rooms.get_all = blocked_get_all  # type: ignore[method-assign]
    settings = PipelineSettings(samples_collector=CollectorSettings(
        max_items=1, max_time_ms=0, overload_threshold=1, max_consecutive_overloaded=2))
    pipeline, _ = _pipeline(settings, slow)
    pipeline.accept(received([_sample("a")]))  # processing, blocked
    await asyncio.sleep(0)
    pipeline.accept(received([_sample("b")]))  # 1 pending + 1 > 1: overloaded once, queued
    pipeline.accept(received([_sample("c")]))  # second overload in a row: dropped
    assert pipeline.metrics.overloaded._value.get() == 2
    assert pipeline.metrics.dropped.labels("overload")._value.get() == 1
    gate.set()
    await pipeline.flush()
    assert pipeline.metrics.samples.labels("client")._value.get() == 2


async def test_bug8_sfu_branch_failure_keeps_the_pipeline_running() -> None:
    h = Harness()
    original = h.repos.sfus.get_all
    failures = 1

    async def failing_get_all(keys: Any) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("storage unavailable")
        return await original(keys)

    h.repos.sfus.get_all = failing_get_all  # type: ignore[method-assign]
    sample = sfu_sample("sfu-1", transports=[{"transportId": "tr"}])
    reports = await h.feed(received([_sample()], [sample]))
    assert len(of_type(reports, ReportType.SFU_TRANSPORT)) == 1  # sample reports still produced
    assert len(of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1
    assert h.pipeline.metrics.batch_failures.labels("sfu_entities")._value.get() == 1
    reports = await h.feed(received(sfu=[sfu_sample("sfu-1", T0 + 1, transports=[{"transportId": "tr"}])]))
    assert event_counts(reports)["SFU_JOINED"] == 1  # the branch works again


async def test_bug8_call_entity_failure_keeps_the_sample_reports() -> None:
    h = Harness()

    async def failing_set_all(entries: Any) -> Any:
        raise RuntimeError("storage unavailable")

    h.repos.clients.set_all = failing_set_all  # type: ignore[method-assign]
    reports = await h.feed(received([_sample("a"), _sample("b")]))
    tracks = of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)
    assert len(tracks) == 2 and all(p["callId"] for p in tracks)
    assert h.pipeline.metrics.batch_failures.labels("call_entities")._value.get() == 1


async def test_metrics_count_batches_samples_reports_events_and_latency() -> None:
    registry = CollectorRegistry()
    pipeline, _ = _pipeline(PipelineSettings(), registry=registry)
    pipeline.accept(received([_sample("a"), _sample("b")], [sfu_sample("sfu-1")]))
    await pipeline.flush()

    def value(name: str, labels: dict[str, str] | None = None) -> float:
        result = registry.get_sample_value(name, labels or {})
        assert result is not None, name
        return result

    assert value("observertc_pipeline_batches_total") == 1
    assert value("observertc_pipeline_samples_total", {"kind": "client"}) == 2
    assert value("observertc_pipeline_samples_total", {"kind": "sfu"}) == 1
    assert value("observertc_pipeline_latency_seconds_count") == 1
    assert value("observertc_pipeline_reports_total", {"type": "OUTBOUND_AUDIO_TRACK"}) == 2
    assert value("observertc_pipeline_events_total", {"name": "CLIENT_JOINED"}) == 2
    assert value("observertc_pipeline_events_total", {"name": "SFU_JOINED"}) == 1
    assert value("observertc_pipeline_queued_samples") == 0


async def test_invalid_samples_are_counted_and_skipped() -> None:
    h = Harness()
    reports = await h.feed(received([{"roomId": "r", "timestamp": T0}, _sample("a")], [{"timestamp": T0}]))
    assert len(of_type(reports, ReportType.OUTBOUND_AUDIO_TRACK)) == 1
    assert h.pipeline.metrics.dropped.labels("invalid_sample")._value.get() == 2


async def test_failing_report_out_is_counted_and_the_pipeline_goes_on() -> None:
    calls = 0

    def report_out(reports: list[Report]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("sink down")

    pipeline = Pipeline(Repositories.in_memory(), PipelineSettings(), report_out, clock=Clock())
    pipeline.accept(received([_sample("a")]))
    await pipeline.flush()
    pipeline.accept(received([_sample("a", T0 + 1)]))
    await pipeline.flush()
    assert calls == 2
    assert pipeline.metrics.dropped.labels("report_out_failed")._value.get() > 0


async def test_deferred_samples_are_dropped_after_their_time_limit() -> None:
    from observer.repositories import Room, room_key

    h = Harness(PipelineSettings(deferred_samples_max_ms=100))
    await h.repos.rooms.set(room_key("svc", "room"), Room("svc", "room", "dead-call"))
    await h.feed(received([_sample("a")]))
    assert h.pipeline.metrics.dropped.labels("no_call_in_time")._value.get() == 1
    assert of_type(h.reports, ReportType.OUTBOUND_AUDIO_TRACK) == []


def _gated_repositories() -> tuple[Repositories, asyncio.Event]:
    """Repositories whose room reads wait for the returned event: batches stay in process until it is set."""
    repos = Repositories.build(lambda kind: YieldingStorage(kind.storage_id))
    gate = asyncio.Event()
    original = repos.rooms.get_all

    async def gated_get_all(keys: Any) -> Any:
        await gate.wait()
        return await original(keys)

    repos.rooms.get_all = gated_get_all  # type: ignore[method-assign]
    return repos, gate


async def test_ready_waits_while_more_than_max_pending_samples_wait() -> None:
    repos, gate = _gated_repositories()
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=1, max_time_ms=0),
                                max_pending_samples=3)
    pipeline, _ = _pipeline(settings, repos)
    for i in range(3):
        pipeline.accept(received([_sample(f"c{i}")]))
    await asyncio.wait_for(pipeline.ready(), 1)  # 3 waiting: not over the limit
    pipeline.accept(received([_sample("c3")]))
    waiting = asyncio.ensure_future(pipeline.ready())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.set()
    await asyncio.wait_for(waiting, 2)
    await pipeline.flush()
    assert pipeline.metrics.batches._value.get() == 4


async def test_ready_flushes_the_buffer_instead_of_waiting_for_its_timer() -> None:
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=100, max_time_ms=60_000),
                                max_pending_samples=2)
    pipeline, _ = _pipeline(settings)
    for i in range(3):
        pipeline.accept(received([_sample(f"c{i}")]))
    await asyncio.wait_for(pipeline.ready(), 2)
    assert pipeline.metrics.batches._value.get() == 1


async def test_ready_does_not_wait_without_a_limit_or_once_stopped() -> None:
    repos, gate = _gated_repositories()
    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=1, max_time_ms=0),
                                max_pending_samples=0)
    pipeline, _ = _pipeline(settings, repos)
    for i in range(5):
        pipeline.accept(received([_sample(f"c{i}")]))
    await asyncio.wait_for(pipeline.ready(), 1)

    limited, gate2 = _gated_repositories()
    pipeline2, _ = _pipeline(attrs.evolve(settings, max_pending_samples=1), limited)
    for i in range(3):
        pipeline2.accept(received([_sample(f"c{i}")]))
    waiting = asyncio.ensure_future(pipeline2.ready())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    stopping = asyncio.ensure_future(pipeline2.stop())
    await asyncio.wait_for(waiting, 1)  # a stopped pipeline refuses, counted: nothing to wait for
    gate.set()
    gate2.set()
    await asyncio.wait_for(stopping, 2)


async def test_each_batch_waits_for_room_for_its_reports() -> None:
    room = asyncio.Event()
    waits = 0

    async def reports_room() -> None:
        nonlocal waits
        waits += 1
        await room.wait()

    settings = PipelineSettings(samples_collector=CollectorSettings(max_items=1, max_time_ms=0))
    pipeline = Pipeline(Repositories.in_memory(), settings, lambda reports: None, clock=Clock(),
                        reports_room=reports_room)
    pipeline.accept(received([_sample("a")]))
    pipeline.accept(received([_sample("b")]))
    await asyncio.sleep(0.05)
    assert pipeline.metrics.batches._value.get() == 0 and waits == 1
    room.set()
    await asyncio.wait_for(pipeline.flush(), 2)
    assert pipeline.metrics.batches._value.get() == 2 and waits == 2
