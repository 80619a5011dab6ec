"""hamok: a Raft-replicated, in-memory storage grid shared by several processes.

Public API::

    from hamok import StorageGrid, GridConfig, WebsocketEndpoint, StaticDiscovery

    endpoint = WebsocketEndpoint("node-a", "127.0.0.1", 5600, secret="s3cret")
    grid = StorageGrid(endpoint, GridConfig(local_id="node-a"))
    rooms = grid.replicated_storage("rooms")          # every entry on every node, writes via raft
    calls = grid.separated_storage("calls")           # each entry owned by the node that made it
    await grid.start()
    await StaticDiscovery({"b": ("127.0.0.1", 5601)}).start(endpoint)
    await rooms.insert("room-1", "call-1")            # None: this node created it cluster-wide
"""

from __future__ import annotations

from typing import Any

from .codec import BYTES, MSGPACK, STR, Codec
from .config import ConfigError, GridConfig
from .errors import (
    AuthenticationError,
    ClosedError,
    DecodeError,
    HamokError,
    HamokTimeoutError,
    NoLeaderError,
    NotFoundError,
    UnsupportedOperationError,
)
from .grid import GridEvents, StorageGrid
from .messages import Message, MessageType
from .storages.base import Storage
from .storages.events import EventCollector, EventKind, StorageEvent, StorageEvents
from .storages.memory import MemoryStorage
from .storages.replicated import ReplicatedStorage
from .transport.base import Endpoint, EndpointListener
from .transport.memory import Faults, InMemoryEndpoint, InMemoryNetwork

__all__ = [
    "BYTES",
    "MSGPACK",
    "STR",
    "AuthenticationError",
    "ClosedError",
    "Codec",
    "ConfigError",
    "DecodeError",
    "Endpoint",
    "EndpointListener",
    "EventCollector",
    "EventKind",
    "Faults",
    "GridConfig",
    "GridEvents",
    "HamokError",
    "HamokTimeoutError",
    "InMemoryEndpoint",
    "InMemoryNetwork",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NoLeaderError",
    "NotFoundError",
    "ReplicatedStorage",
    "Storage",
    "StorageEvent",
    "StorageEvents",
    "StorageGrid",
    "UnsupportedOperationError",
]

# modules written alongside (websocket transport, discovery, separated storage, backups) are
# exported lazily so that importing hamok stays cheap and each stays optional at import time
_LAZY = {
    "WebsocketEndpoint": ("hamok.transport.websocket", "WebsocketEndpoint"),
    "StaticDiscovery": ("hamok.discovery", "StaticDiscovery"),
    "K8sPodsDiscovery": ("hamok.discovery", "K8sPodsDiscovery"),
    "SeparatedStorage": ("hamok.storages.separated", "SeparatedStorage"),
    "Backups": ("hamok.storages.backups", "Backups"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hamok' has no attribute {name!r}")
