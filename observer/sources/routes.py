"""Wiring of the samples sources into an aiohttp application."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from observer.samples import SamplesConsumer
from observer.sources.intake import SamplesIntake
from observer.sources.metrics import SourceMetrics
from observer.sources.rest import REST_PATH, RestSamplesSource
from observer.sources.settings import SourceSettings
from observer.sources.websocket import WEBSOCKET_PATH, WebsocketSamplesSource


class SamplesSources:
    """The REST and websocket samples endpoints, sharing one set of metrics.

    ``peers_ready`` is asked for every new websocket session (``minRemotePeers``); ``None`` = always ready.
    """

    def __init__(
        self,
        consumer: SamplesConsumer,
        settings: SourceSettings,
        peers_ready: Callable[[], bool] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.metrics = SourceMetrics(registry)
        intake = SamplesIntake(consumer, settings, self.metrics)
        self.rest = RestSamplesSource(intake, settings, self.metrics)
        self.websocket = WebsocketSamplesSource(intake, settings, self.metrics, peers_ready)

    @property
    def routes(self) -> list[web.RouteDef]:
        return [web.post(REST_PATH, self.rest.handle), web.get(WEBSOCKET_PATH, self.websocket.handle)]

    def add_routes(self, app: web.Application) -> None:
        """Add the endpoints, and close the open websocket sessions when the application shuts down."""
        app.add_routes(self.routes)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.websocket.close_all()


def samples_routes(
    consumer: SamplesConsumer,
    settings: SourceSettings,
    peers_ready: Callable[[], bool] | None = None,
    registry: CollectorRegistry | None = None,
) -> list[web.RouteDef]:
    return SamplesSources(consumer, settings, peers_ready, registry).routes
