"""Prometheus collectors of the websocket endpoint."""

from __future__ import annotations

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge


@attrs.frozen
class TransportMetrics:
    frames_sent: Counter
    bytes_sent: Counter
    frames_received: Counter
    bytes_received: Counter
    peers_connected: Gauge
    auth_failures: Counter
    dropped_frames: Counter
    """Labelled by reason: not_connected, too_large, queue_full, peer_down, listener_error."""
    connections_closed: Counter
    """Labelled by reason (peer_closed, duplicate, replaced, malformed, too_large, auth_failed, ...)."""
    dial_attempts: Counter
    reconnect_attempts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> TransportMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        prefix = "hamok_transport_"
        return cls(
            frames_sent=Counter(prefix + "frames_sent", "Frames handed to the network", registry=reg),
            bytes_sent=Counter(
                prefix + "bytes_sent", "Frame payload bytes handed to the network", registry=reg
            ),
            frames_received=Counter(prefix + "frames_received", "Whole frames received", registry=reg),
            bytes_received=Counter(prefix + "bytes_received", "Frame payload bytes received", registry=reg),
            peers_connected=Gauge(prefix + "peers_connected", "Peers with an open channel", registry=reg),
            auth_failures=Counter(
                prefix + "auth_failures", "Connections refused because the peer failed the secret challenge",
                registry=reg,
            ),
            dropped_frames=Counter(
                prefix + "dropped_frames", "Frames not delivered, by reason", ["reason"], registry=reg
            ),
            connections_closed=Counter(
                prefix + "connections_closed", "Connections closed, by reason", ["reason"], registry=reg
            ),
            dial_attempts=Counter(prefix + "dial_attempts", "Outgoing connection attempts", registry=reg),
            reconnect_attempts=Counter(
                prefix + "reconnect_attempts", "Outgoing connection attempts after the first one per address",
                registry=reg,
            ),
        )
