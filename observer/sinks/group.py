"""Fan-out of report batches to every sink, each through its own report-type filter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

import attrs

from observer.reports.model import Report, ReportType
from observer.sinks.base import Sink

_log = logging.getLogger(__name__)

# None: every type passes; a collection: the allowed types; a callable: asked once per type.
TypeFilter = Callable[[ReportType], bool] | Collection[ReportType] | None


@attrs.frozen
class _Member:
    sink: Sink
    allowed: frozenset[ReportType]


class SinkGroup:
    """Holds the running sinks. ``dispatch`` never blocks and never raises; ``room`` waits for the delivering
    sinks' queues to drain below half (a failing sink only fills, and then overflows, its own queue)."""

    def __init__(self) -> None:
        self._members: list[_Member] = []

    def add(self, sink: Sink, accepts: TypeFilter = None) -> None:
        if any(m.sink.name == sink.name for m in self._members):
            raise ValueError(f"a sink named {sink.name!r} is already in the group")
        self._members.append(_Member(sink, _allowed_types(accepts)))

    @property
    def sinks(self) -> list[Sink]:
        return [m.sink for m in self._members]

    def __len__(self) -> int:
        return len(self._members)

    async def start(self) -> None:
        await asyncio.gather(*(m.sink.start() for m in self._members))

    def dispatch(self, reports: Sequence[Report]) -> None:
        if not reports:
            return
        for member in self._members:
            if len(member.allowed) == len(ReportType):
                selected: Sequence[Report] = reports
            else:
                selected = [r for r in reports if r.type in member.allowed]
            if selected:
                member.sink.submit(selected)

    async def room(self) -> None:
        """Return when every delivering sink's queue is below half its size (see ``Sink.room``)."""
        for member in self._members:
            await member.sink.room()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop all sinks at once; each gets the same ``timeout`` to flush."""
        results = await asyncio.gather(*(m.sink.stop(timeout) for m in self._members), return_exceptions=True)
        for member, result in zip(self._members, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("sink %s: stop failed: %r", member.sink.name, result)


def _allowed_types(accepts: TypeFilter) -> frozenset[ReportType]:
    if accepts is None:
        return frozenset(ReportType)
    if callable(accepts):
        return frozenset(t for t in ReportType if accepts(t))
    return frozenset(ReportType(t) for t in accepts)
