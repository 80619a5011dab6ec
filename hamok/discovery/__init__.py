"""Where peers are: a static list or the pods of a Kubernetes namespace."""

from .base import Discovery
from .config import (
    DiscoveryConfigError,
    K8sPodsDiscoveryConfig,
    PeerAddress,
    StaticDiscoveryConfig,
    build_discovery,
)
from .kubernetes import K8sPodsDiscovery
from .static import StaticDiscovery

__all__ = [
    "Discovery",
    "DiscoveryConfigError",
    "K8sPodsDiscovery",
    "K8sPodsDiscoveryConfig",
    "PeerAddress",
    "StaticDiscovery",
    "StaticDiscoveryConfig",
    "build_discovery",
]
