"""The sink machinery shared by every sink: a bounded queue, a batching worker, retries, metrics.

A sink subclass implements ``_open`` (connect; may raise), ``_send`` (deliver one batch; raise when the
whole batch failed, or return a :class:`SendOutcome` for per-report results) and ``_close``.
The caller only ever calls :meth:`Sink.submit`, which never blocks and never raises, and may await
:meth:`Sink.room` between two submits (the pipeline does, before each batch). A *delivering* sink (connected,
its last send went through) takes every report submitted: ``queueSize`` bounds it through ``room``, which
waits while the queue is at least half full, so a burst or a slow server slows the pipeline down instead of
losing reports. A sink that is not delivering (connecting, retrying) is not waited for, and reports beyond
its queue capacity are dropped and counted. A worker task takes batches off the queue and delivers them,
retrying with capped exponential backoff and jitter; a batch that still fails after ``maxRetries`` is
counted as failed and the worker moves on, so a dead server costs a bounded number of reports per retry
window and the newest reports get through as soon as it is back.

Metrics (labels ``sink`` = the sink's name):
  observertc_sink_reports_sent_total       reports the server acknowledged
  observertc_sink_reports_failed_total     reports given up on after the retries (or rejected for good)
  observertc_sink_reports_dropped_total    reports never delivered for another reason (label ``reason``:
                                           queue_full, shutdown, stopped, unrouted, too_large)
  observertc_sink_reports_retried_total    reports sent again after a failed attempt (once per retry)
  observertc_sink_queue_depth              reports waiting in the queue
  observertc_sink_batch_seconds            duration of successful send calls (histogram)
  observertc_sink_connected                1 while the sink holds an open connection
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import random
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from observer.reports.model import Report
from observer.sinks.settings import ConfigReader

_log = logging.getLogger(__name__)


class PermanentSinkError(Exception):
    """Raised by ``_send``/``_open`` when retrying cannot help (bad request, missing stream, auth)."""


@attrs.frozen
class SendOutcome:
    """What ``_send`` did with a batch when not everything went through.

    Reports neither in ``retry`` nor ``failed`` nor counted in ``dropped`` were delivered."""

    retry: Sequence[Report] = ()
    failed: Sequence[Report] = ()
    dropped: Mapping[str, int] = attrs.field(factory=dict)
    error: BaseException | None = None


@attrs.frozen
class BatchSettings:
    queue_size: int = 10_000
    max_batch_size: int = 500
    max_batch_delay: float = 0.2
    max_retries: int = 10
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    # a send running longer than this counts as stalled: the sink is then not waited for (see Sink.room)
    stalled_send: float = 10.0

    @classmethod
    def read(cls, reader: ConfigReader, defaults: BatchSettings | None = None,
             retries_alias: str | None = None) -> BatchSettings:
        """The common keys every sink accepts: queueSize, maxBatchSize, maxBatchDelayMs, maxRetries,
        maxRetryBackoffMs (``retries_alias`` names a legacy key meaning the same as maxRetries)."""
        d = defaults or cls()
        max_retries = reader.integer("maxRetries", d.max_retries, minimum=0)
        if retries_alias is not None and reader.has(retries_alias):
            if reader.has("maxRetries"):
                raise reader.error(retries_alias, "give either maxRetries or this key, not both")
            max_retries = reader.integer(retries_alias, minimum=0)
        return cls(
            queue_size=reader.integer("queueSize", d.queue_size, minimum=1),
            max_batch_size=reader.integer("maxBatchSize", d.max_batch_size, minimum=1),
            max_batch_delay=reader.integer("maxBatchDelayMs", round(d.max_batch_delay * 1000),
                                           minimum=0) / 1000,
            max_retries=max_retries,
            initial_backoff=d.initial_backoff,
            max_backoff=reader.integer("maxRetryBackoffMs", round(d.max_backoff * 1000), minimum=1) / 1000,
            stalled_send=d.stalled_send,
        )


class SinkMetrics:
    """The sink collectors of one registry, shared by all sinks registered on it."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, SinkMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("observertc_sink_reports_sent", "Reports delivered by the sink",
                            ["sink"], registry=registry)
        self.failed = Counter("observertc_sink_reports_failed", "Reports the sink gave up on after retries",
                              ["sink"], registry=registry)
        self.dropped = Counter("observertc_sink_reports_dropped", "Reports the sink dropped without sending",
                               ["sink", "reason"], registry=registry)
        self.retried = Counter("observertc_sink_reports_retried", "Reports sent again after a failed attempt",
                               ["sink"], registry=registry)
        self.queue_depth = Gauge("observertc_sink_queue_depth", "Reports waiting in the sink queue",
                                 ["sink"], registry=registry)
        self.connected = Gauge("observertc_sink_connected", "1 while the sink holds an open connection",
                               ["sink"], registry=registry)
        self.batch_seconds = Histogram(
            "observertc_sink_batch_seconds", "Duration of successful sink send calls", ["sink"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> SinkMetrics:
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics


class Sink(abc.ABC):
    """Base of every sink. See the module docstring for the contract."""

    type_name: ClassVar[str]
    default_batch: ClassVar[BatchSettings] = BatchSettings()

    def __init__(self, name: str, batch: BatchSettings | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.batch = batch or self.default_batch
        self.log = logging.getLogger(f"observer.sinks.{name}")
        metrics = SinkMetrics.on(registry if registry is not None else CollectorRegistry())
        self._m_sent = metrics.sent.labels(name)
        self._m_failed = metrics.failed.labels(name)
        self._m_dropped = metrics.dropped
        self._m_retried = metrics.retried.labels(name)
        self._m_depth = metrics.queue_depth.labels(name)
        self._m_connected = metrics.connected.labels(name)
        self._m_batch = metrics.batch_seconds.labels(name)
        self._queue: collections.deque[Report] = collections.deque()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._inflight: Sequence[Report] = ()
        self._worker: asyncio.Task[None] | None = None
        self._open_ok = False
        self._retrying = False
        self._send_started: float | None = None
        self._room = asyncio.Event()  # set while the queue is below half its size (or not delivering)
        self._room.set()
        self._stopping = False
        self._stopped = False

    # ---- to implement -------------------------------------------------------------------------------
    async def _open(self) -> None:  # noqa: B027 - sinks without a connection need nothing here
        """Connect. Called before the first send and after a failed send when :meth:`_reset_after`
        says so. Raise on failure; the worker retries."""

    @abc.abstractmethod
    async def _send(self, batch: Sequence[Report]) -> SendOutcome | None:
        """Deliver ``batch``. Raise if nothing was delivered; return an outcome for partial results."""

    async def _close(self) -> None:  # noqa: B027 - sinks without a connection need nothing here
        """Release the connection. Must tolerate being called when ``_open`` failed halfway."""

    def _reset_after(self, error: BaseException) -> bool:
        """Whether a failed send should close the connection and open a new one before the retry."""
        return False

    # ---- public API ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._open_ok

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def delivering(self) -> bool:
        """Connected, the last send went through (not retrying) and the current one is not stalled."""
        if not self._open_ok or self._retrying or self._stopping:
            return False
        started = self._send_started
        return started is None or time.monotonic() - started < self.batch.stalled_send

    def _backlogged(self) -> bool:
        return self.delivering and len(self._queue) >= self.batch.queue_size // 2

    def _update_room(self) -> None:
        if self._backlogged():
            self._room.clear()
        else:
            self._room.set()

    async def room(self) -> None:
        """Return when the queue is below half its size, or at once when the sink is not delivering."""
        while self._backlogged():
            self._room.clear()
            try:  # woken by the worker; the timeout notices a send that stalls meanwhile
                await asyncio.wait_for(self._room.wait(), self.batch.stalled_send)
            except TimeoutError:
                pass

    async def start(self) -> None:
        """Start the worker. Never fails because the server is unreachable: the worker keeps trying."""
        if self._worker is None and not self._stopped:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"sink-{self.name}")

    def submit(self, reports: Sequence[Report]) -> None:
        """Queue ``reports`` for delivery. Never blocks, never raises; overflow is dropped and counted."""
        try:
            if not reports:
                return
            if self._stopping or self._stopped:
                self._drop("stopped", len(reports))
                return
            room = self.batch.queue_size - len(self._queue)
            if room < len(reports) and not self.delivering:
                self._drop("queue_full", len(reports) - max(room, 0))
                reports = reports[: max(room, 0)]
            self._queue.extend(reports)
            self._m_depth.set(len(self._queue))
            self._update_room()
            self._wake.set()
            if len(self._queue) >= self.batch.max_batch_size:
                self._full.set()
        except Exception:  # submit must never take the pipeline down
            self.log.exception("sink %s: submit failed", self.name)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then close. What is left is counted as
        dropped (reason ``shutdown``)."""
        if self._stopped:
            return
        self._stopping = True
        self._room.set()
        self._wake.set()
        self._full.set()
        deadline = time.monotonic() + max(timeout, 0.0)
        worker = self._worker
        if worker is not None:
            done, _ = await asyncio.wait({worker}, timeout=max(timeout, 0.0))
            if not done:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
        left = len(self._queue) + len(self._inflight)
        if left:
            self._drop("shutdown", left)
            self.log.warning("sink %s: stopped with %d undelivered reports", self.name, left)
        self._queue.clear()
        self._inflight = ()
        self._m_depth.set(0)
        await self._close_quietly(max(deadline - time.monotonic(), 1.0))
        self._stopped = True

    # ---- worker -------------------------------------------------------------------------------------
    def _drop(self, reason: str, count: int) -> None:
        if count > 0:
            self._m_dropped.labels(self.name, reason).inc(count)

    async def _run(self) -> None:
        await self._connect_early()
        while True:
            try:
                if not self._queue:
                    if self._stopping:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if (len(self._queue) < self.batch.max_batch_size and not self._stopping
                        and self.batch.max_batch_delay > 0):
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), self.batch.max_batch_delay)
                    except TimeoutError:
                        pass
                count = min(len(self._queue), self.batch.max_batch_size)
                if count == len(self._queue):  # the common case, in C
                    batch = list(self._queue)
                    self._queue.clear()
                else:
                    batch = [self._queue.popleft() for _ in range(count)]
                self._m_depth.set(len(self._queue))
                self._update_room()
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a sink must not kill its worker
                self.log.exception("sink %s: worker error", self.name)
                self._m_failed.inc(len(self._inflight))
                self._inflight = ()
                await asyncio.sleep(self.batch.initial_backoff)

    async def _connect_early(self) -> None:
        """Open the connection before the first report, retrying with backoff until it works, reports
        arrive (delivery then takes over the retrying) or the sink stops."""
        attempt = 0
        while not self._open_ok and not self._queue and not self._stopping:
            try:
                await self._open()
            except Exception as exc:
                await self._close_quietly(self.batch.max_backoff)
                attempt += 1
                log = self.log.warning if attempt == 1 else self.log.debug
                log("sink %s: cannot connect yet, retrying: %s", self.name, _describe(exc))
                self._wake.clear()
                if self._queue or self._stopping:  # reports came in while _open was trying
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), self._backoff(attempt))
                except TimeoutError:
                    pass
            else:
                self._set_connected(True)
                if attempt:
                    self.log.info("sink %s: connected after %d attempts", self.name, attempt + 1)

    async def _deliver(self, batch: Sequence[Report]) -> None:
        self._inflight = batch
        try:
            await self._deliver_with_retries(batch)
        finally:
            self._retrying = False
            self._update_room()
        # not reached when cancelled: stop() then counts the in-flight reports as dropped
        self._inflight = ()

    async def _deliver_with_retries(self, batch: Sequence[Report]) -> None:
        attempt = 0
        first_error: BaseException | None = None
        while batch:
            error: BaseException | None
            try:
                if not self._open_ok:
                    await self._open()
                    self._set_connected(True)
                started = time.perf_counter()
                self._send_started = time.monotonic()
                try:
                    outcome = await self._send(batch)
                finally:
                    self._send_started = None
            except PermanentSinkError as exc:
                self._m_failed.inc(len(batch))
                self.log.error("sink %s: %d reports rejected: %s", self.name, len(batch), exc)
                return
            except Exception as exc:
                error = exc
            else:
                self._m_batch.observe(time.perf_counter() - started)
                if outcome is None:
                    self._m_sent.inc(len(batch))
                    batch, error = (), None
                else:
                    batch, error = self._account(batch, outcome)
                self._inflight = batch
                if not batch:
                    if first_error is not None:
                        self.log.info("sink %s: delivered after %d retries", self.name, attempt)
                    return
            if error is None:
                error = RuntimeError("the server did not accept all reports")
            self._retrying = True
            self._room.set()  # not delivering: nobody waits for this sink
            if first_error is None:
                first_error = error
                self.log.warning("sink %s: send of %d reports failed, retrying: %s",
                                 self.name, len(batch), _describe(error))
            if not self._open_ok or self._reset_after(error):
                await self._close_quietly(self.batch.max_backoff)
            attempt += 1
            if attempt > self.batch.max_retries:
                self._m_failed.inc(len(batch))
                self.log.error("sink %s: gave up on %d reports after %d retries: %s",
                               self.name, len(batch), self.batch.max_retries, _describe(error))
                return
            self._m_retried.inc(len(batch))
            await asyncio.sleep(self._backoff(attempt))

    def _account(self, batch: Sequence[Report], outcome: SendOutcome) -> tuple[Sequence[Report], Any]:
        dropped = 0
        for reason, count in outcome.dropped.items():
            self._drop(reason, count)
            dropped += count
        if outcome.failed:
            self._m_failed.inc(len(outcome.failed))
            self.log.error("sink %s: %d reports rejected: %s", self.name, len(outcome.failed),
                           _describe(outcome.error) if outcome.error else "rejected by the server")
        self._m_sent.inc(max(len(batch) - len(outcome.retry) - len(outcome.failed) - dropped, 0))
        return list(outcome.retry), outcome.error

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.batch.max_backoff, self.batch.initial_backoff * 2 ** min(attempt - 1, 20))
        return ceiling * random.uniform(0.5, 1.0)

    def _set_connected(self, value: bool) -> None:
        self._open_ok = value
        self._m_connected.set(1 if value else 0)
        self._update_room()

    async def _close_quietly(self, timeout: float) -> None:
        self._set_connected(False)
        try:
            await asyncio.wait_for(self._close(), timeout)
        except Exception as exc:
            self.log.debug("sink %s: close failed: %s", self.name, _describe(exc))


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
