"""Discovery settings as the seed's YAML spells them, validated, and the factory that builds one.

``hamok.discovery: {type: StaticDiscovery, config: {peers: {<name>: {host, port}}}}`` or
``{type: K8sPodsDiscovery, config: {namespace, prefix, port, labelSelector, watch, pollIntervalInMs}}``.
Ports must be in 1024..65535, as the seed required. Unknown keys are errors naming the key
and its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from .base import Discovery
from .kubernetes import K8sPodsDiscovery
from .static import StaticDiscovery

MIN_PORT = 1024


class DiscoveryConfigError(ValueError):
    """A discovery setting is missing or wrong; the message names its path."""


def _check_keys(raw: Any, allowed: set[str], path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise DiscoveryConfigError(f"{path}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DiscoveryConfigError(
            f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    return raw


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PORT <= value <= 65535:
        raise DiscoveryConfigError(f"{path}: must be an integer in {MIN_PORT}..65535, got {value!r}")
    return value


def _text(value: Any, path: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise DiscoveryConfigError(f"{path}: must be a non-empty string, got {value!r}")
    return value


@attrs.frozen
class PeerAddress:
    host: str
    port: int


@attrs.frozen
class StaticDiscoveryConfig:
    peers: Mapping[str, PeerAddress]

    @classmethod
    def from_mapping(cls, raw: Any, path: str = "discovery.config") -> StaticDiscoveryConfig:
        body = _check_keys(raw, {"peers"}, path)
        peers_raw = body.get("peers")
        if not isinstance(peers_raw, Mapping) or not peers_raw:
            raise DiscoveryConfigError(
                f"{path}.peers: must map peer names to {{host, port}}, got {peers_raw!r}"
            )
        peers: dict[str, PeerAddress] = {}
        for name, entry in peers_raw.items():
            entry_path = f"{path}.peers.{name}"
            if not isinstance(name, str) or not name:
                raise DiscoveryConfigError(
                    f"{path}.peers: peer names must be non-empty strings, got {name!r}"
                )
            fields = _check_keys(entry, {"host", "port"}, entry_path)
            if "host" not in fields or "port" not in fields:
                raise DiscoveryConfigError(f"{entry_path}: needs both 'host' and 'port'")
            host = _text(fields["host"], f"{entry_path}.host")
            peers[name] = PeerAddress(host=host or "", port=_port(fields["port"], f"{entry_path}.port"))
        return cls(peers=peers)


@attrs.frozen
class K8sPodsDiscoveryConfig:
    port: int
    namespace: str = "default"
    prefix: str | None = None
    label_selector: str | None = None
    watch: bool = True
    poll_interval_ms: int = 5000

    @classmethod
    def from_mapping(cls, raw: Any, path: str = "discovery.config") -> K8sPodsDiscoveryConfig:
        body = _check_keys(
            raw, {"namespace", "prefix", "port", "labelSelector", "watch", "pollIntervalInMs"}, path
        )
        if "port" not in body:
            raise DiscoveryConfigError(f"{path}.port: required (the hamok port every pod listens on)")
        watch = body.get("watch", True)
        if not isinstance(watch, bool):
            raise DiscoveryConfigError(f"{path}.watch: must be true or false, got {watch!r}")
        poll = body.get("pollIntervalInMs", 5000)
        if isinstance(poll, bool) or not isinstance(poll, int) or poll < 100:
            raise DiscoveryConfigError(f"{path}.pollIntervalInMs: must be an integer >= 100, got {poll!r}")
        prefix = _text(body.get("prefix"), f"{path}.prefix", optional=True)
        selector = _text(body.get("labelSelector"), f"{path}.labelSelector", optional=True)
        return cls(
            port=_port(body["port"], f"{path}.port"),
            namespace=_text(body.get("namespace", "default"), f"{path}.namespace") or "default",
            prefix=prefix,
            label_selector=selector,
            watch=watch,
            poll_interval_ms=poll,
        )


DISCOVERY_TYPES = ("StaticDiscovery", "K8sPodsDiscovery")


def build_discovery(
    type: str,
    config: Mapping[str, Any] | None,
    *,
    local_address: tuple[str, int] | None = None,
    registry: CollectorRegistry | None = None,
    path: str = "discovery",
) -> Discovery:
    """Build the discovery the seed config names. ``local_address`` is this process's own
    entry in a static peer list (skipped)."""
    if type == "StaticDiscovery":
        static = StaticDiscoveryConfig.from_mapping(config, f"{path}.config")
        return StaticDiscovery(
            {name: (peer.host, peer.port) for name, peer in static.peers.items()}, local_address=local_address
        )
    if type == "K8sPodsDiscovery":
        pods = K8sPodsDiscoveryConfig.from_mapping(config or {}, f"{path}.config")
        return K8sPodsDiscovery(
            port=pods.port,
            namespace=pods.namespace,
            prefix=pods.prefix,
            label_selector=pods.label_selector,
            watch=pods.watch,
            poll_interval_s=pods.poll_interval_ms / 1000,
            registry=registry,
        )
    raise DiscoveryConfigError(
        f"{path}.type: unknown discovery {type!r} (known: {', '.join(DISCOVERY_TYPES)})"
    )
