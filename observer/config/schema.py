# ruff: noqa: RUF009 -- setting()/block() wrap attrs.field (per-field rules in its metadata)
"""The typed configuration. Field defaults are the seed's ``application.yaml`` values
(spec/observer.md §10); class defaults of shared blocks (:class:`CollectorConfig`) are the seed's
code defaults, used only for keys neither the YAML nor the user sets.

YAML keys are the camelCase form of the field names; kebab-case (and SCREAMING_SNAKE) spellings
are accepted too. Comments name the seed's key where it differs or where a value is ours.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from observer.config.binding import (
    OMIT,
    Binder,
    Invalid,
    Scope,
    block,
    dump,
    join,
    plain,
    setting,
    to_int,
)
from observer.config.keys import canonical
from observer.reports.model import FILTER_FLAG, ReportType

_PROMETHEUS_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_PROMETHEUS_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_NON_EMPTY = r"\S.*"


# ---- micronaut / endpoints -------------------------------------------------------------------
def build_port(binder: Binder, raw: Any, path: str) -> int:
    port = to_int(raw)
    if port == -1:  # Micronaut's "pick a random port"
        return 0
    if not 0 <= port <= 65535:
        raise Invalid(f"must be a port number 0..65535 (0 or -1: any free port), got {port}")
    return port


_BYTE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _build_readable_bytes(binder: Binder, raw: Any, path: str) -> int:
    """An int, or Micronaut's readable size ("10MB", "512KB")."""
    if isinstance(raw, str):
        text = raw.strip().upper()
        digits = text.rstrip("KMGB")
        unit = text[len(digits) :]
        if digits.strip().isdigit() and unit in _BYTE_UNITS:
            size = int(digits) * _BYTE_UNITS[unit]
        else:
            raise Invalid(f"must be a size in bytes (e.g. 104857600 or 100MB), got {raw!r}")
    else:
        size = to_int(raw)
    if size < 1:
        raise Invalid(f"must be >= 1, got {size}")
    return size


@attrs.frozen
class HttpServerConfig:
    """``micronaut.server``: the samples port (REST + websocket). Other micronaut keys are ignored."""

    port: int = setting(7080, build=build_port)  # ${APPLICATION_SERVER_PORT:7080}
    max_request_size: int = setting(104_857_600, build=_build_readable_bytes)


@attrs.frozen
class ManagementConfig:
    """``endpoints.all.port`` (${APPLICATION_MANAGEMENT_PORT:7081}) and ``micronaut.metrics.enabled``
    (${METRICS_ENABLED:True}): health and Prometheus endpoints."""

    port: int = 7081
    metrics_enabled: bool = True


# ---- observer.sources ---------------------------------------------------------------------------
@attrs.frozen
class RestSourceConfig:
    enabled: bool = True


@attrs.frozen
class WebsocketSourceConfig:
    enabled: bool = True
    min_remote_peers: int = setting(0, minimum=0)
    max_payload_bytes: int = setting(1_000_000, minimum=1)  # ours; the seed hard-codes 1,000,000


@attrs.frozen
class SourcesConfig:
    accept_sfu_samples: bool = True
    accept_client_samples: bool = True
    use_server_timestamp: bool = False
    # ours: while more received samples than this wait for the pipeline, the websocket source stops
    # reading (TCP backpressure reaches the monitors) and REST answers wait; 0: no limit
    max_pending_samples: int = setting(2000, minimum=0)
    # None: every serviceId is accepted; a list (or "a,b" string): only those (an empty list: none)
    allowed_service_ids: tuple[str, ...] | None = None
    rest: RestSourceConfig = block(RestSourceConfig)
    websocket: WebsocketSourceConfig = block(WebsocketSourceConfig)


# ---- observer.repository ------------------------------------------------------------------------
def _idle(default: int = 300) -> Any:
    return setting(default, minimum=3)  # the seed's @Min(3); seconds


@attrs.frozen
class RepositoryConfig:
    use_backups: bool = False
    call_max_idle_time_in_s: int = _idle()
    clients_max_idle: int = _idle()
    peer_connections_max_idle: int = _idle()
    inbound_tracks_max_idle: int = _idle()
    outbound_tracks_max_idle: int = _idle()
    sfu_max_idle_time_in_s: int = _idle()
    sfu_transport_max_idle_time_in_s: int = _idle()
    sfu_inbound_rtp_pad_max_idle_time_in_s: int = _idle()
    sfu_outbound_rtp_pad_max_idle_time_in_s: int = _idle()
    sfu_sctp_channel_max_idle_time_in_s: int = _idle()


# ---- observer.buffers ---------------------------------------------------------------------------
@attrs.frozen
class CollectorConfig:
    """A buffer that flushes at ``max_items`` or ``max_time_in_ms`` after its first item."""

    max_items: int = setting(2000, minimum=1)
    max_time_in_ms: int = setting(100, minimum=0)
    overload_threshold: int = setting(-1, minimum=-1)  # -1: no overload guard
    max_consecutive_overloaded: int = setting(3, minimum=1)

    @property
    def overload_limit(self) -> int | None:
        """The queue size above which a flush counts as overloaded (the seed raises the threshold
        to at least ``max_items``); None when the guard is off."""
        if self.overload_threshold < 0:
            return None
        return max(self.overload_threshold, self.max_items)


@attrs.frozen
class BuffersConfig:
    samples_collector: CollectorConfig = block(CollectorConfig, max_items=100, max_time_in_ms=1000)
    debouncers: CollectorConfig = block(CollectorConfig, max_items=10000, max_time_in_ms=1000)
    reports_collector: CollectorConfig = block(CollectorConfig, max_items=5000, max_time_in_ms=2000)

    def _bind_finish(self, scope: Scope) -> BuffersConfig:
        if self.reports_collector.overload_threshold >= 0:
            scope.warn("reportsCollector.overloadThreshold",
                       "is ignored: reports are not dropped for load, the sinks' flow control slows intake instead")
        return self


# ---- observer.security --------------------------------------------------------------------------
def hashlib_name(java_name: str) -> str:
    """Java MessageDigest names (SHA-256, SHA3-512, SHA-512/256, MD5) -> hashlib names."""
    name = java_name.strip().upper()
    if name.startswith("SHA3-"):
        return "sha3_" + name[5:]
    if name.startswith("SHA-512/"):
        return "sha512_" + name[8:]
    return name.replace("-", "").lower()


@attrs.frozen
class ObfuscationsConfig:
    hash_algorithm: str = "SHA-256"
    hash_salt: str = "MySalt"

    def _bind_finish(self, scope: Scope) -> ObfuscationsConfig:
        try:
            hashlib.new(hashlib_name(self.hash_algorithm))
        except (ValueError, TypeError):
            scope.error("hashAlgorithm", f"unsupported hash algorithm {self.hash_algorithm!r}")
        return self


@attrs.frozen
class SecurityConfig:
    print_configs: bool = True
    allow_expose_config: bool = False
    obfuscations: ObfuscationsConfig = block(ObfuscationsConfig)


# ---- observer.evaluators ------------------------------------------------------------------------
class CallIdAssignMode(enum.StrEnum):
    MASTER = "master"  # the observer assigns callIds per room
    SLAVE = "slave"  # clients supply callIds


class ObfuscationMethod(enum.StrEnum):
    NONE = "none"
    ANONYMIZATION = "anonymization"


@attrs.frozen
class ClientSamplesAnalyserConfig:
    drop_unmatched_reports: bool = False
    match_tracks: bool = True


@attrs.frozen
class SfuSamplesAnalyserConfig:
    drop_unmatched_internal_inbound_reports: bool = False
    drop_unmatched_inbound_reports: bool = False
    drop_unmatched_outbound_reports: bool = False
    match_rtp_pads: bool = True


@attrs.frozen
class CallUpdaterConfig:
    enabled: bool = True
    call_id_assign_mode: CallIdAssignMode = CallIdAssignMode.MASTER


@attrs.frozen
class ObfuscatorConfig:
    enabled: bool = False
    ice_addresses: ObfuscationMethod = ObfuscationMethod.NONE
    room_id: ObfuscationMethod = ObfuscationMethod.NONE
    user_id: ObfuscationMethod = ObfuscationMethod.NONE


@attrs.frozen
class ObserverReportsConfig:
    create_call_summary_reports: bool = True


@attrs.frozen
class EvaluatorsConfig:
    client_samples_analyser: ClientSamplesAnalyserConfig = block(ClientSamplesAnalyserConfig)
    sfu_samples_analyser: SfuSamplesAnalyserConfig = block(SfuSamplesAnalyserConfig)
    call_updater: CallUpdaterConfig = block(CallUpdaterConfig)
    obfuscator: ObfuscatorConfig = block(ObfuscatorConfig)
    observer_reports: ObserverReportsConfig = block(ObserverReportsConfig)


# ---- observer.sinks -----------------------------------------------------------------------------
SINK_TYPES: tuple[str, ...] = (
    "LoggerSink",
    "FileSink",  # ours (commented out in the seed)
    "KafkaSink",
    "MongoSink",
    "FirehoseSink",
    "AwsS3Sink",
    "WebsocketSink",
    "SocketSink",
)
DEFAULT_SINK_NAME = "defaultLogger"

_FLAG_TYPES: dict[str, ReportType] = {canonical(flag): rtype for rtype, flag in FILTER_FLAG.items()}
# the README's spelling; the seed silently ignored it, which dropped ICE pair reports
_FLAG_ALIASES: dict[str, tuple[str, ReportType]] = {
    canonical("sendIceCanddiatePairs"): ("sendIceCandidatePairs", ReportType.ICE_CANDIDATE_PAIR),
}


@attrs.frozen
class ReportFilter:
    """Which report types a sink receives. With no ``reports`` block every type passes; with a
    block only the types whose ``send*`` flag is true do (every flag defaults to false)."""

    allowed: frozenset[ReportType] = frozenset(ReportType)

    def passes(self, report_type: ReportType) -> bool:
        return report_type in self.allowed

    @property
    def passes_all(self) -> bool:
        return self.allowed == frozenset(ReportType)


def _build_report_filter(binder: Binder, raw: Any, path: str) -> ReportFilter:
    if raw is None:
        return ReportFilter()
    mapping = binder.mapping(raw, path)
    if mapping is None:
        return ReportFilter()
    allowed: set[ReportType] = set()
    seen: dict[ReportType, str] = {}
    for raw_key, value in mapping.items():
        key_path = join(path, raw_key)
        key = canonical(raw_key)
        if key in _FLAG_TYPES:
            rtype = _FLAG_TYPES[key]
        elif key in _FLAG_ALIASES:
            correct, rtype = _FLAG_ALIASES[key]
            binder.warn(key_path, f"misspelled flag, use {correct}")
        else:
            binder.unknown(path, raw_key, FILTER_FLAG.values())
            continue
        if rtype in seen:
            binder.error(key_path, f"duplicate key (also given as {seen[rtype]})")
            continue
        seen[rtype] = raw_key
        if binder.value(value, bool, key_path, False):
            allowed.add(rtype)
    return ReportFilter(frozenset(allowed))


def _dump_report_filter(value: ReportFilter) -> Any:
    if value.passes_all:
        return OMIT
    return {flag: rtype in value.allowed for rtype, flag in FILTER_FLAG.items()}


@attrs.frozen
class SinkConfig:
    """One ``observer.sinks.<name>`` entry. ``config`` is the sink's own block, free-form here: the
    sink module validates it (``observer.sinks.settings.ConfigReader`` accepts camelCase and
    kebab-case, as the seed's ConfigConverter did). Keys are kept as the user wrote them so sink
    errors name them; placeholders are expanded; values keep their YAML types (a value that came
    from a placeholder is a string). Treat it as read-only."""

    name: str
    type: str
    enabled: bool = True
    reports: ReportFilter = attrs.field(factory=ReportFilter)
    config: Mapping[str, Any] = attrs.field(factory=dict)


DEFAULT_SINK = SinkConfig(name=DEFAULT_SINK_NAME, type="LoggerSink", config={"printTypeSummary": True})

_SINK_KEYS = {"type": "type", "enabled": "enabled", "reports": "reports", "config": "config"}


def _free_form(value: Any) -> Any:
    """A detached copy with string keys (YAML allows ``1: x``)."""
    if isinstance(value, Mapping):
        return {str(key): _free_form(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_free_form(item) for item in value]
    return value


def _build_sink(binder: Binder, name: str, raw: Any, path: str) -> SinkConfig | None:
    mapping = binder.mapping(raw, path)
    if mapping is None:
        return None
    matched, rest = binder.match_keys(mapping, path, _SINK_KEYS)
    for raw_key in rest:
        binder.unknown(path, raw_key, _SINK_KEYS)
    sink_type = None
    if "type" in matched:
        raw_key, value = matched["type"]
        sink_type = binder.value(value, str | None, join(path, raw_key), None)
    if not sink_type:
        binder.error(join(path, "type"), f"sink {name!r} has no type (one of {', '.join(SINK_TYPES)})")
        return None
    sink_type = sink_type.strip()
    known = {t.lower(): t for t in SINK_TYPES}
    if sink_type.lower() not in known:
        binder.error(
            join(path, matched["type"][0]),
            f"sink {name!r} has unknown type {sink_type!r} (one of {', '.join(SINK_TYPES)})",
        )
        return None
    enabled = True
    if "enabled" in matched:
        raw_key, value = matched["enabled"]
        enabled = binder.value(value, bool, join(path, raw_key), True)
    reports = ReportFilter()
    if "reports" in matched:
        raw_key, value = matched["reports"]
        reports = _build_report_filter(binder, value, join(path, raw_key))
    config: dict[str, Any] = {}
    if "config" in matched:
        raw_key, value = matched["config"]
        config_map = binder.mapping(value, join(path, raw_key))
        if config_map is not None:
            config = _free_form(config_map)
    return SinkConfig(
        name=name, type=known[sink_type.lower()], enabled=enabled, reports=reports, config=config
    )


def _build_sinks(binder: Binder, raw: Any, path: str) -> tuple[SinkConfig, ...]:
    """Sinks in file order. With no enabled sink the default logger sink is added (as in the seed,
    where a failed or absent sink list falls back to it)."""
    mapping = binder.mapping(raw, path)
    sinks: list[SinkConfig] = []
    for name, value in (mapping or {}).items():
        sink = _build_sink(binder, name, value, join(path, name))
        if sink is not None:
            sinks.append(sink)
    if not any(sink.enabled for sink in sinks):
        sinks = [sink for sink in sinks if sink.name != DEFAULT_SINK_NAME] + [DEFAULT_SINK]
    return tuple(sinks)


def _dump_sinks(sinks: tuple[SinkConfig, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sink in sinks:
        entry: dict[str, Any] = {"type": sink.type, "enabled": sink.enabled}
        reports = _dump_report_filter(sink.reports)
        if reports is not OMIT:
            entry["reports"] = reports
        entry["config"] = plain(sink.config)
        out[sink.name] = entry
    return out


# ---- observer.hamok -----------------------------------------------------------------------------
MEMBER_NAMES_POOL: tuple[str, ...] = (
    "Lisa", "Bart", "Homer", "Marge", "Maggie", "Barney", "Mo", "Ned", "Milhouse", "Grampa",
    "Krusty", "Smithers", "Ralph", "Tony", "Jacqueline", "Nelson",
)  # fmt: skip


@attrs.frozen
class StorageGridConfig:
    raft_max_log_entries_retention_time_in_minutes: int = setting(5, minimum=0)  # 0: keep forever
    heartbeat_in_ms: int = setting(150, minimum=1)
    follower_max_idle_in_ms: int = setting(10000, minimum=1)
    peer_max_idle_in_ms: int = setting(10000, minimum=1)
    sending_hello_timeout_in_ms: int = setting(1500, minimum=1)
    application_commit_index_sync_timeout_in_ms: int = setting(60000, minimum=0)
    request_timeout_in_ms: int = setting(3000, minimum=1)

    def _bind_finish(self, scope: Scope) -> StorageGridConfig:
        if self.follower_max_idle_in_ms <= self.heartbeat_in_ms:
            scope.error(
                "followerMaxIdleInMs",
                f"must be greater than heartbeatInMs ({self.heartbeat_in_ms}), "
                f"got {self.follower_max_idle_in_ms} (followers would start elections between heartbeats)",
            )
        return self


@attrs.frozen
class WebsocketEndpointConfig:
    """``hamok.endpoint: {type: WebsocketEndpoint, config: {...}}``: the grid's websocket server."""

    TYPE: ClassVar[str] = "WebsocketEndpoint"

    server_host: str | None = None  # None: listen on every interface
    server_port: int = setting(5601, minimum=0, maximum=65535)  # 0: any free port
    max_message_size: int = setting(5000, minimum=1)  # bytes per websocket fragment
    add_connection: bool = False


@attrs.frozen
class StaticPeer:
    name: str
    host: str
    port: int


@attrs.frozen
class _PeerAddress:
    host: str = setting(pattern=_NON_EMPTY, pattern_hint="a host name or address")
    port: int = setting(minimum=1024, maximum=65535)


def _build_peers(binder: Binder, raw: Any, path: str) -> tuple[StaticPeer, ...]:
    mapping = binder.mapping(raw, path)
    peers: list[StaticPeer] = []
    for name, value in (mapping or {}).items():
        peer_path = join(path, name)
        address = binder.bind(_PeerAddress, value, peer_path)
        if address is not None:
            peers.append(StaticPeer(name=name, host=address.host, port=address.port))
    return tuple(peers)


def _dump_peers(peers: tuple[StaticPeer, ...]) -> dict[str, Any]:
    return {peer.name: {"host": peer.host, "port": peer.port} for peer in peers}


@attrs.frozen
class StaticDiscoveryConfig:
    """``hamok.discovery: {type: StaticDiscovery, config: {peers: {<name>: {host, port}}}}``."""

    TYPE: ClassVar[str] = "StaticDiscovery"

    peers: tuple[StaticPeer, ...] = setting((), build=_build_peers, dump=_dump_peers)


@attrs.frozen
class K8sPodsDiscoveryConfig:
    """``hamok.discovery: {type: K8sPodsDiscovery, config: {...}}``: peers are the running pods of
    ``namespace`` whose name starts with ``prefix`` and/or that match ``label_selector`` (ours).
    ``port`` is the peers' hamok port (None in the file: the local endpoint's serverPort).
    ``watch`` (ours): follow the pod list with a watch instead of the seed's polling."""

    TYPE: ClassVar[str] = "K8sPodsDiscovery"

    namespace: str = setting("default", pattern=_NON_EMPTY, pattern_hint="a namespace name")
    prefix: str | None = None
    port: int | None = setting(None, minimum=1024, maximum=65535)
    label_selector: str | None = None
    watch: bool = False

    def _bind_finish(self, scope: Scope) -> K8sPodsDiscoveryConfig:
        if not self.prefix and not self.label_selector:
            scope.error(
                "prefix", "is required (or set labelSelector), else every pod of the namespace is a peer"
            )
        return self


DiscoveryConfig = StaticDiscoveryConfig | K8sPodsDiscoveryConfig
_ENDPOINT_TYPES: dict[str, type] = {WebsocketEndpointConfig.TYPE: WebsocketEndpointConfig}
_DISCOVERY_TYPES: dict[str, type] = {
    StaticDiscoveryConfig.TYPE: StaticDiscoveryConfig,
    K8sPodsDiscoveryConfig.TYPE: K8sPodsDiscoveryConfig,
}
_TYPED_KEYS = {"type": "type", "config": "config"}


def _build_typed(binder: Binder, raw: Any, path: str, types: Mapping[str, type]) -> Any:
    """A ``{type, config}`` block; an empty block (the README's ``endpoint: {}``) means unset."""
    mapping = binder.mapping(raw, path)
    if not mapping:
        return None
    matched, rest = binder.match_keys(mapping, path, _TYPED_KEYS)
    for raw_key in rest:
        binder.unknown(path, raw_key, _TYPED_KEYS)
    type_name = None
    if "type" in matched:
        raw_key, value = matched["type"]
        type_name = binder.value(value, str | None, join(path, raw_key), None)
    if not type_name:
        binder.error(join(path, "type"), f"is required (one of {', '.join(types)})")
        return None
    if type_name.strip() not in types:
        binder.error(join(path, matched["type"][0]), f"must be one of {', '.join(types)}, got {type_name!r}")
        return None
    cls = types[type_name.strip()]
    config_key, config_raw = matched.get("config", ("config", None))
    return binder.bind(cls, config_raw, join(path, config_key))


def _build_endpoint(binder: Binder, raw: Any, path: str) -> WebsocketEndpointConfig | None:
    return _build_typed(binder, raw, path, _ENDPOINT_TYPES)


def _build_discovery(binder: Binder, raw: Any, path: str) -> DiscoveryConfig | None:
    return _build_typed(binder, raw, path, _DISCOVERY_TYPES)


def _dump_typed(value: Any) -> Any:
    if value is None:
        return None
    return {"type": value.TYPE, "config": dump(value)}


@attrs.frozen
class HamokConfig:
    """The storage grid. With no ``endpoint`` the observer runs single-node."""

    storage_grid: StorageGridConfig = block(StorageGridConfig)
    member_names_pool: tuple[str, ...] = MEMBER_NAMES_POOL
    use_partial_responses: bool = True
    first_min_remote_peers: int = setting(1, minimum=0)
    endpoint: WebsocketEndpointConfig | None = setting(None, build=_build_endpoint, dump=_dump_typed)
    discovery: DiscoveryConfig | None = setting(None, build=_build_discovery, dump=_dump_typed)
    secret: str | None = None  # ours: shared secret peers authenticate with (HMAC challenge)

    def _bind_finish(self, scope: Scope) -> HamokConfig:
        result = self
        if isinstance(self.discovery, K8sPodsDiscoveryConfig) and self.discovery.port is None:
            port = (
                self.endpoint.server_port
                if self.endpoint is not None
                else WebsocketEndpointConfig().server_port
            )
            if port < 1024:
                scope.error(
                    "discovery.config.port", "is required when the endpoint's serverPort is not fixed"
                )
            else:
                result = attrs.evolve(self, discovery=attrs.evolve(self.discovery, port=port))
        if self.discovery is not None and self.endpoint is None:
            scope.warn("discovery", "has no effect without observer.hamok.endpoint (running single-node)")
        if self.secret is not None and len(self.secret) < 16:
            scope.warn("secret", "is shorter than 16 characters; use a long random value")
        return result


# ---- observer.metrics ---------------------------------------------------------------------------
@attrs.frozen
class MetricsGroupConfig:
    enabled: bool = True


@attrs.frozen
class RepositoryMetricsConfig:
    enabled: bool = True
    expose_period_in_min: int = setting(5, minimum=1, aliases=("exposePeriodInMins",))  # README spelling


@attrs.frozen
class MetricsConfig:
    prefix: str = setting(
        "observertc", pattern=_PROMETHEUS_NAME, pattern_hint="a Prometheus metric name prefix"
    )
    service_id_tag_name: str = setting(
        "service", pattern=_PROMETHEUS_LABEL, pattern_hint="a Prometheus label name"
    )
    media_unit_tag_name: str = setting(
        "mediaUnit",
        pattern=_PROMETHEUS_LABEL,
        pattern_hint="a Prometheus label name",
        aliases=("mediaUnitIdTagName",),  # README spelling
    )
    evaluator_metrics: MetricsGroupConfig = block(MetricsGroupConfig)
    report_metrics: MetricsGroupConfig = block(MetricsGroupConfig)
    sink_metrics: MetricsGroupConfig = block(MetricsGroupConfig)
    source_metrics: MetricsGroupConfig = block(MetricsGroupConfig)
    repository_metrics: RepositoryMetricsConfig = block(RepositoryMetricsConfig)
    client_samples_metric_config: MetricsGroupConfig = block(MetricsGroupConfig)


# ---- the whole ------------------------------------------------------------------------------------
SERVER_FIELDS = frozenset({"http", "management"})


@attrs.frozen
class ObserverConfig:
    """The effective configuration. ``http`` and ``management`` come from the file's ``micronaut``
    and ``endpoints`` blocks; every other field is the ``observer`` block of the same name."""

    http: HttpServerConfig = block(HttpServerConfig)
    management: ManagementConfig = block(ManagementConfig)
    sources: SourcesConfig = block(SourcesConfig)
    repository: RepositoryConfig = block(RepositoryConfig)
    buffers: BuffersConfig = block(BuffersConfig)
    security: SecurityConfig = block(SecurityConfig)
    evaluators: EvaluatorsConfig = block(EvaluatorsConfig)
    sinks: tuple[SinkConfig, ...] = setting((DEFAULT_SINK,), build=_build_sinks, dump=_dump_sinks)
    hamok: HamokConfig = block(HamokConfig)
    metrics: MetricsConfig = block(MetricsConfig)

    def sink(self, name: str) -> SinkConfig:
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration as a seed-style YAML tree (camelCase keys). Loading it
        gives this configuration back. Holds secrets: log :meth:`redacted` instead."""
        return {
            "micronaut": {
                "server": dump(self.http),
                "metrics": {"enabled": self.management.metrics_enabled},
            },
            "endpoints": {"all": {"port": self.management.port}},
            "observer": dump(self, exclude=SERVER_FIELDS),
        }

    def redacted(self) -> dict[str, Any]:
        """:meth:`to_dict` with passwords, secret keys, tokens, salts, the hamok secret and
        credentials inside URIs masked: safe to log or print."""
        from observer.config.redact import redact

        return redact(self.to_dict())
