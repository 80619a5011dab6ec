"""The management port: /health (liveness), /ready (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Readiness(Protocol):
    def ready(self) -> tuple[bool, dict[str, Any]]: ...


class ManagementServer:
    def __init__(self, target: Readiness, registry: CollectorRegistry) -> None:
        self._target = target
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.application(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    async def _ready(self, request: web.Request) -> web.Response:
        ok, detail = self._target.ready()
        return web.json_response({"status": "UP" if ok else "DOWN", **detail}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class PrefixedCollector(Collector):
    """Exposes another registry's metrics under a prefix: hamok names its metrics ``hamok_*``
    (it is a library of its own), the observer serves them as ``observertc_hamok_*``."""

    def __init__(self, source: CollectorRegistry, prefix: str) -> None:
        self._source = source
        self._prefix = prefix

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            renamed = Metric(self._prefix + family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                renamed.add_sample(self._prefix + sample.name, sample.labels, sample.value, sample.timestamp,
                                   sample.exemplar)
            yield renamed
