"""Prometheus collectors of the samples sources."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

TRANSPORT_REST = "rest"
TRANSPORT_WEBSOCKET = "websocket"

# frames_rejected / websocket_refused reasons
REJECT_DECODE_ERROR = "decode_error"
REJECT_PROTOCOL_ERROR = "protocol_error"  # a websocket protocol violation (aiohttp closes the session)
REJECT_BAD_PARAMETERS = "bad_parameters"  # unsupported format or schemaVersion
REJECT_TOO_LARGE = "too_large"
REJECT_CONTENT_TYPE = "unsupported_content_type"
REJECT_SERVICE_NOT_ALLOWED = "service_not_allowed"
REJECT_DISABLED = "disabled"
REJECT_NOT_READY = "not_ready"
REJECT_INTERNAL_ERROR = "internal_error"

# samples_dropped reasons besides the decoder's Rejection reasons
DROP_CLIENT_SAMPLES_DISABLED = "client_samples_not_accepted"
DROP_SFU_SAMPLES_DISABLED = "sfu_samples_not_accepted"


class SourceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.samples_received = Counter(
            "observertc_samples_received",
            "Valid samples handed to the pipeline",
            ["transport", "kind"],
            registry=registry,
        )
        self.samples_dropped = Counter(
            "observertc_samples_dropped",
            "Samples dropped individually from a decoded frame",
            ["reason"],
            registry=registry,
        )
        self.frames_rejected = Counter(
            "observertc_samples_frames_rejected",
            "Frames (REST bodies, websocket messages) rejected as a whole",
            ["transport", "reason"],
            registry=registry,
        )
        self.websocket_refused = Counter(
            "observertc_samples_websocket_refused",
            "Websocket sessions closed at open",
            ["reason"],
            registry=registry,
        )
        self.backpressure = Counter(
            "observertc_samples_backpressure_seconds",
            "Time the sources waited for the pipeline before reading on (websocket) or answering (REST)",
            ["transport"],
            registry=registry,
        )
        self.websocket_sessions = Gauge(
            "observertc_samples_websocket_sessions",
            "Open samples websocket sessions",
            registry=registry,
        )
