"""Helpers shared by the pipeline tests: sample builders, a fake clock, a pipeline harness, fixture
frame loading and single-node grids. (Its own tests check the fixture loader.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import cache
from typing import Any

import attrs

from hamok import GridConfig, InMemoryNetwork, MemoryStorage, Storage, StorageGrid
from observer.pipeline import Expirer, MaxIdleSettings, Pipeline, PipelineSettings
from observer.reports.events import decode_attachments
from observer.reports.model import Report, ReportType
from observer.repositories import Repositories
from observer.samples import ReceivedSamples, make_decoder
from tests.shared_paths import FIXTURES, MANIFEST

SERVICE = "svc"
MEDIA_UNIT = "mu"
T0 = 1_700_000_000_000


class Clock:
    """Server time in ms, moved by hand."""

    def __init__(self, now: int = T0 + 10_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def track(track_id: str, pc_id: str, ssrc: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"trackId": track_id, "peerConnectionId": pc_id, "ssrc": ssrc, **extra}


def client_sample(client_id: str, room_id: str = "room", timestamp: int = T0, *, call_id: str | None = None,
                  user_id: str | None = None, marker: str | None = None, pc_ids: Iterable[str] = (),
                  inbound_audio: Iterable[dict[str, Any]] = (), inbound_video: Iterable[dict[str, Any]] = (),
                  outbound_audio: Iterable[dict[str, Any]] = (), outbound_video: Iterable[dict[str, Any]] = (),
                  **extra: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "clientId": client_id, "roomId": room_id, "callId": call_id, "userId": user_id, "marker": marker,
        "timestamp": timestamp, "sampleSeq": 0, "timeZoneOffsetInHours": None,
    }
    pcs = list(pc_ids)
    if pcs:
        sample["pcTransports"] = [{"peerConnectionId": pc, "transportId": f"t-{pc}", "label": f"label-{pc}"}
                                  for pc in pcs]
    for key, items in (("inboundAudioTracks", inbound_audio), ("inboundVideoTracks", inbound_video),
                       ("outboundAudioTracks", outbound_audio), ("outboundVideoTracks", outbound_video)):
        items = list(items)
        if items:
            sample[key] = items
    sample.update(extra)
    return sample


def sfu_sample(sfu_id: str, timestamp: int = T0, *, transports: Iterable[dict[str, Any]] = (),
               inbound_pads: Iterable[dict[str, Any]] = (), outbound_pads: Iterable[dict[str, Any]] = (),
               sctp_channels: Iterable[dict[str, Any]] = (), **extra: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {"sfuId": sfu_id, "timestamp": timestamp, "marker": None,
                              "timeZoneOffsetInHours": None}
    for key, items in (("transports", transports), ("inboundRtpPads", inbound_pads),
                       ("outboundRtpPads", outbound_pads), ("sctpChannels", sctp_channels)):
        items = list(items)
        if items:
            sample[key] = items
    sample.update(extra)
    return sample


def received(client: Iterable[dict[str, Any]] = (), sfu: Iterable[dict[str, Any]] = (), *,
             service_id: str = SERVICE, media_unit_id: str = MEDIA_UNIT) -> ReceivedSamples:
    return ReceivedSamples(service_id, media_unit_id, list(client), list(sfu), T0)


def short_idle(seconds: int = 5) -> MaxIdleSettings:
    return MaxIdleSettings(*([seconds] * len(attrs.fields(MaxIdleSettings))))


def events(reports: Iterable[Report], name: str | None = None) -> list[dict[str, Any]]:
    out = [r.payload for r in reports if r.type in (ReportType.CALL_EVENT, ReportType.SFU_EVENT)]
    return [p for p in out if name is None or p["name"] == name]


def event_counts(reports: Iterable[Report]) -> Counter[str]:
    return Counter(p["name"] for p in events(reports))


def attachments(payload: dict[str, Any]) -> dict[str, Any]:
    return decode_attachments(payload["attachments"])


def of_type(reports: Iterable[Report], report_type: ReportType) -> list[dict[str, Any]]:
    return [r.payload for r in reports if r.type == report_type]


class Harness:
    """A pipeline (flushed explicitly) and an expirer over the same repositories and clock."""

    def __init__(self, settings: PipelineSettings | None = None, repositories: Repositories | None = None,
                 clock: Clock | None = None, *, leader: bool = True) -> None:
        self.settings = settings or PipelineSettings()
        self.repos = repositories or Repositories.in_memory()
        self.clock = clock or Clock()
        self.reports: list[Report] = []
        self.leader = leader
        self.pipeline = Pipeline(self.repos, self.settings, self.reports.extend, clock=self.clock)
        self.expirer = Expirer(self.repos, self.settings, lambda: self.leader, self.pipeline.emit_reports,
                               clock=self.clock)

    async def feed(self, *frames: ReceivedSamples) -> list[Report]:
        """Accept the frames as one batch, process it; the reports it produced."""
        start = len(self.reports)
        for frame in frames:
            self.pipeline.accept(frame)
        await self.pipeline.flush()
        return self.reports[start:]

    async def expire(self, after_s: float) -> list[Report]:
        self.clock.advance(after_s)
        start = len(self.reports)
        await self.expirer.run_once()
        await self.pipeline.flush()
        return self.reports[start:]


class YieldingStorage(Storage[Any, Any]):
    """A memory storage whose operations give the event loop a turn before and after, so
    concurrent pipelines interleave at every storage call as they do over a network."""

    def __init__(self, storage_id: str) -> None:
        super().__init__(storage_id)
        self.inner: MemoryStorage[Any, Any] = MemoryStorage(storage_id)
        self.inner.events = self.events
        self.calls: Counter[str] = Counter()

    async def _op(self, name: str, *args: Any) -> Any:
        self.calls[name] += 1
        await asyncio.sleep(0)
        result = await getattr(self.inner, name)(*args)
        await asyncio.sleep(0)
        return result

    async def get_all(self, keys: Iterable[Any]) -> dict[Any, Any]:
        return await self._op("get_all", list(keys))  # type: ignore[no-any-return]

    async def set_all(self, entries: Mapping[Any, Any]) -> dict[Any, Any]:
        return await self._op("set_all", dict(entries))  # type: ignore[no-any-return]

    async def insert_all(self, entries: Mapping[Any, Any]) -> dict[Any, Any]:
        return await self._op("insert_all", dict(entries))  # type: ignore[no-any-return]

    async def delete_all(self, keys: Iterable[Any]) -> set[Any]:
        return await self._op("delete_all", list(keys))  # type: ignore[no-any-return]

    async def clear(self) -> None:
        await self._op("clear")

    async def keys(self) -> set[Any]:
        return await self._op("keys")  # type: ignore[no-any-return]

    async def size(self) -> int:
        return await self._op("size")  # type: ignore[no-any-return]


def yielding_repositories() -> Repositories:
    return Repositories.build(lambda kind: YieldingStorage(kind.storage_id))


# ----------------------------------------------------------------------------------------- fixtures
@cache
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def scenario(name: str) -> dict[str, Any]:
    return manifest()["scenarios"][name]


def fixture_frames(name: str) -> list[tuple[dict[str, Any], ReceivedSamples]]:
    """The scenario's frames in send order, decoded with the observer's decoder."""
    entries = sorted((f for f in manifest()["files"] if f["scenario"] == name), key=lambda f: f["order"])
    out = []
    for entry in entries:
        decoded = make_decoder(entry["format"], entry["schemaVersion"]).decode((FIXTURES / entry["file"]).read_bytes())
        out.append((entry, ReceivedSamples(entry["serviceId"], entry["mediaUnitId"], decoded.client_samples,
                                           decoded.sfu_samples, T0)))
    return out


# ----------------------------------------------------------------------------------------- grids
def separated_storage_available() -> bool:
    try:
        import hamok.storages.separated  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.asynccontextmanager
async def single_node_grid() -> AsyncIterator[StorageGrid]:
    net = InMemoryNetwork()
    grid = StorageGrid(net.endpoint("n0"), GridConfig(local_id="n0"))
    await grid.start()
    try:
        yield grid
    finally:
        await grid.close()


def grid_repositories(grid: StorageGrid) -> Repositories:
    """Rooms replicated, the rest separated (replicated while SeparatedStorage does not exist yet)."""
    return Repositories.on_grid(grid, separated=separated_storage_available())


# ----------------------------------------------------------------------------------------- own tests
def test_fixture_frames_decode_in_send_order() -> None:
    frames = fixture_frames("sfu-json")
    assert [entry["order"] for entry, _ in frames] == sorted(entry["order"] for entry, _ in frames)
    assert sum(len(r.client_samples) for _, r in frames) == 9
    assert sum(len(r.sfu_samples) for _, r in frames) == 3
