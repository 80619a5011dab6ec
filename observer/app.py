"""Wiring: config -> hamok grid -> repositories -> pipeline -> sinks, plus the two HTTP servers.

Start order: metrics registry, sinks (they connect in the background and never block
start-up), the hamok grid and discovery, repositories, pipeline and expirer, the
management server, and last the samples server (so nothing is accepted before the rest
can take it). Stop order is the reverse: stop accepting, flush the pipeline into the sinks,
flush the sinks (bounded), leave the grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from hamok import GridConfig, InMemoryNetwork, StorageGrid
from observer.config import ObserverConfig
from observer.config.schema import (
    CollectorConfig,
    K8sPodsDiscoveryConfig,
    StaticDiscoveryConfig,
)
from observer.gc_tuning import tune_gc_for_throughput
from observer.management import ManagementServer, PrefixedCollector
from observer.pipeline.expiry import Expirer
from observer.pipeline.pipeline import Pipeline
from observer.pipeline.settings import (
    CollectorSettings,
    MaxIdleSettings,
    ObfuscatorSettings,
    PipelineSettings,
)
from observer.reports.schema import register_report_metrics
from observer.repositories.repositories import Repositories
from observer.sinks.factory import build_sink
from observer.sinks.group import SinkGroup
from observer.sources import SamplesSources, SourceSettings

log = logging.getLogger(__name__)

SINK_FLUSH_TIMEOUT_S = 10.0


def pipeline_settings(config: ObserverConfig) -> PipelineSettings:
    ev, rep, buf = config.evaluators, config.repository, config.buffers
    obf = config.security.obfuscations

    def collector(c: CollectorConfig) -> CollectorSettings:
        return CollectorSettings(max_items=c.max_items, max_time_ms=c.max_time_in_ms,
                                 overload_threshold=c.overload_threshold,
                                 max_consecutive_overloaded=c.max_consecutive_overloaded)

    return PipelineSettings(
        call_id_assign_mode=str(ev.call_updater.call_id_assign_mode),
        call_updater_enabled=ev.call_updater.enabled,
        drop_unmatched_reports=ev.client_samples_analyser.drop_unmatched_reports,
        match_tracks=ev.client_samples_analyser.match_tracks,
        drop_unmatched_internal_inbound_reports=ev.sfu_samples_analyser.drop_unmatched_internal_inbound_reports,
        drop_unmatched_inbound_reports=ev.sfu_samples_analyser.drop_unmatched_inbound_reports,
        drop_unmatched_outbound_reports=ev.sfu_samples_analyser.drop_unmatched_outbound_reports,
        match_rtp_pads=ev.sfu_samples_analyser.match_rtp_pads,
        max_idle=MaxIdleSettings(
            call_s=rep.call_max_idle_time_in_s,
            client_s=rep.clients_max_idle,
            peer_connection_s=rep.peer_connections_max_idle,
            inbound_track_s=rep.inbound_tracks_max_idle,
            outbound_track_s=rep.outbound_tracks_max_idle,
            sfu_s=rep.sfu_max_idle_time_in_s,
            sfu_transport_s=rep.sfu_transport_max_idle_time_in_s,
            sfu_inbound_rtp_pad_s=rep.sfu_inbound_rtp_pad_max_idle_time_in_s,
            sfu_outbound_rtp_pad_s=rep.sfu_outbound_rtp_pad_max_idle_time_in_s,
            sfu_sctp_channel_s=rep.sfu_sctp_channel_max_idle_time_in_s,
        ),
        samples_collector=collector(buf.samples_collector),
        reports_collector=collector(buf.reports_collector),
        obfuscator=ObfuscatorSettings(
            enabled=ev.obfuscator.enabled,
            ice_addresses=str(ev.obfuscator.ice_addresses),
            room_id=str(ev.obfuscator.room_id),
            user_id=str(ev.obfuscator.user_id),
            hash_algorithm=obf.hash_algorithm,
            hash_salt=obf.hash_salt,
        ),
        use_backups=rep.use_backups,
        max_pending_samples=config.sources.max_pending_samples,
    )


def source_settings(config: ObserverConfig) -> SourceSettings:
    src = config.sources
    return SourceSettings(
        rest_enabled=src.rest.enabled,
        websocket_enabled=src.websocket.enabled,
        accept_client_samples=src.accept_client_samples,
        accept_sfu_samples=src.accept_sfu_samples,
        use_server_timestamp=src.use_server_timestamp,
        allowed_service_ids=src.allowed_service_ids,
        max_payload_bytes=src.websocket.max_payload_bytes,
    )


def grid_config(config: ObserverConfig, local_id: str) -> GridConfig:
    sg = config.hamok.storage_grid
    return GridConfig(
        local_id=local_id,
        heartbeat_ms=sg.heartbeat_in_ms,
        follower_max_idle_ms=sg.follower_max_idle_in_ms,
        peer_max_idle_ms=sg.peer_max_idle_in_ms,
        request_timeout_ms=sg.request_timeout_in_ms,
        log_retention_ms=sg.raft_max_log_entries_retention_time_in_minutes * 60_000,
        throw_on_request_timeout=not config.hamok.use_partial_responses,
    )


def _local_id(config: ObserverConfig) -> str:
    # a fresh id per process start: a restarted daemon must not reuse its previous raft identity
    pool = config.hamok.member_names_pool or ("observer",)
    return f"{random.choice(pool)}-{uuid.uuid4().hex[:8]}"


def _advertised_host() -> str:
    return os.environ.get("POD_IP") or os.environ.get("HOSTNAME") or socket.gethostname()


class ObserverApp:
    """One observer daemon. ``await start()``, then ``await stop()`` (SIGTERM does both in run())."""

    def __init__(self, config: ObserverConfig, *, registry: CollectorRegistry | None = None,
                 extra_sinks: list[Any] | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        # hamok's own metrics (hamok_*) are served as observertc_hamok_*
        self.hamok_registry = CollectorRegistry()
        self.registry.register(PrefixedCollector(self.hamok_registry, "observertc_"))
        self.local_id = _local_id(config)
        self.sinks = SinkGroup()
        for sink in extra_sinks or ():      # sinks built in code (benchmarks, embedding applications)
            self.sinks.add(sink)
        self.grid: StorageGrid | None = None
        self.discovery: Any = None
        self.repositories: Repositories | None = None
        self.pipeline: Pipeline | None = None
        self.expirer: Expirer | None = None
        self.management: ManagementServer | None = None
        self._samples_runner: web.AppRunner | None = None
        self.samples_port: int | None = None
        self.stopping = False

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        cfg = self.config
        register_report_metrics(self.registry)
        for sink_config in cfg.sinks:
            if not sink_config.enabled:
                continue
            sink = build_sink(sink_config.name, sink_config.type, sink_config.config, self.registry)
            self.sinks.add(sink, accepts=sink_config.reports.passes)
        await self.sinks.start()

        self.grid = self._build_grid()
        self.repositories = Repositories.on_grid(self.grid, use_backups=cfg.repository.use_backups,
                                                 registry=self.hamok_registry)
        await self.grid.start()
        self.discovery = self._build_discovery()
        if self.discovery is not None:
            await self.discovery.start(self.grid.endpoint)

        settings = pipeline_settings(cfg)
        self.pipeline = Pipeline(self.repositories, settings, self.sinks.dispatch, registry=self.registry,
                                 reports_room=self.sinks.room)
        grid = self.grid
        self.expirer = Expirer(self.repositories, settings, lambda: grid.is_leader, self.pipeline.emit_reports,
                               registry=self.registry)
        self.expirer.start()

        self.management = ManagementServer(self, self.registry)
        await self.management.start("0.0.0.0", cfg.management.port)

        app = web.Application(client_max_size=cfg.http.max_request_size)
        SamplesSources(self.pipeline, source_settings(cfg), self._peers_ready, self.registry).add_routes(app)
        self._samples_runner = web.AppRunner(app, handle_signals=False)
        await self._samples_runner.setup()
        site = web.TCPSite(self._samples_runner, "0.0.0.0", cfg.http.port)
        await site.start()
        self.samples_port = _bound_port(site)
        log.info("observer %s serving samples on :%s, management on :%s", self.local_id, self.samples_port,
                 self.management.port)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("observer %s stopping: no new samples, flushing the pipeline and the sinks", self.local_id)
        if self._samples_runner is not None:
            await self._samples_runner.cleanup()          # stop accepting; close websocket sessions
        if self.pipeline is not None:
            await self.pipeline.stop()                    # processes what was accepted, emits its reports
        if self.expirer is not None:
            await self.expirer.stop()
        await self.sinks.stop(SINK_FLUSH_TIMEOUT_S)
        if self.discovery is not None:
            with contextlib.suppress(Exception):
                await self.discovery.stop()
        if self.grid is not None:
            await self.grid.close()
        if self.management is not None:
            await self.management.stop()
        log.info("observer %s stopped", self.local_id)

    # ---------------------------------------------------------------- state for /ready
    def ready(self) -> tuple[bool, dict[str, Any]]:
        grid = self.grid
        detail: dict[str, Any] = {
            "grid": None if grid is None else {
                "id": grid.local_id, "leader": grid.leader_id, "members": sorted(grid.members),
                "peers": sorted(grid.remote_peers), "joining": grid.joining,
            },
            "sinks": {s.name: s.connected for s in self.sinks.sinks},
        }
        ok = (not self.stopping and grid is not None and grid.leader_id is not None and not grid.joining
              and self._peers_ready())
        return ok, detail

    def _peers_ready(self) -> bool:
        wanted = self.config.sources.websocket.min_remote_peers
        return wanted <= 0 or (self.grid is not None and len(self.grid.remote_peers) >= wanted)

    # ---------------------------------------------------------------- hamok
    def _build_grid(self) -> StorageGrid:
        cfg = self.config.hamok
        gc = grid_config(self.config, self.local_id)
        if cfg.endpoint is not None and not cfg.secret:
            log.warning("hamok.secret is not set: peers are not authenticated (set it on every daemon)")
        if cfg.endpoint is None:
            endpoint: Any = InMemoryNetwork().endpoint(self.local_id)    # single node, no network
        else:
            from hamok.transport.websocket import WebsocketEndpoint

            endpoint = WebsocketEndpoint(
                self.local_id,
                cfg.endpoint.server_host or "0.0.0.0",
                cfg.endpoint.server_port,
                advertised_host=_advertised_host(),
                secret=cfg.secret,
                registry=self.hamok_registry,
            )
        return StorageGrid(endpoint, gc, registry=self.hamok_registry)

    def _build_discovery(self) -> Any:
        cfg = self.config.hamok
        if cfg.endpoint is None or cfg.discovery is None:
            return None
        from hamok.discovery import K8sPodsDiscovery, StaticDiscovery

        disc = cfg.discovery
        if isinstance(disc, StaticDiscoveryConfig):
            return StaticDiscovery({p.name: (p.host, p.port) for p in disc.peers})
        if isinstance(disc, K8sPodsDiscoveryConfig):
            return K8sPodsDiscovery(port=disc.port or cfg.endpoint.server_port, namespace=disc.namespace,
                                    prefix=disc.prefix, label_selector=disc.label_selector, watch=disc.watch)
        raise ValueError(f"unsupported discovery {type(disc).__name__}")


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else None


async def run(config: ObserverConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    app = ObserverApp(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        tune_gc_for_throughput()
        await stop.wait()
    finally:
        await app.stop()
