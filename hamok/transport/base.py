"""The contract between the grid and whatever carries its bytes.

An endpoint moves opaque frames between named peers (peer id = the remote grid's local id).
It owns connections, authentication, reconnects and chunking of large frames; the grid
owns everything above (raft, storages, membership decisions). This split lets the
grid run the same over real websockets and over the in-memory network used by
deterministic tests.
"""

from __future__ import annotations

import abc
from typing import Protocol


class EndpointListener(Protocol):
    """What an endpoint calls back into. Every callback runs on the event loop thread."""

    def on_frame(self, source: str, data: bytes) -> None:
        """A whole frame (reassembled if it was chunked) from peer ``source``."""

    def on_peer_up(self, peer_id: str) -> None:
        """Frames can now be exchanged with ``peer_id`` in both directions."""

    def on_peer_down(self, peer_id: str) -> None:
        """The connection to ``peer_id`` is lost (it may come back later: on_peer_up again)."""


class Endpoint(abc.ABC):
    """Carries frames between this process and its peers."""

    def __init__(self, local_id: str) -> None:
        self.local_id = local_id
        self._listener: EndpointListener | None = None

    def set_listener(self, listener: EndpointListener) -> None:
        self._listener = listener

    @abc.abstractmethod
    async def start(self) -> None:
        """Start serving / connecting. Returns once the endpoint can send and receive."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close every connection; no callback fires after this returns."""

    @abc.abstractmethod
    def send(self, destination: str, data: bytes) -> bool:
        """Queue one frame for ``destination``; never blocks. False if that peer is not connected."""

    @property
    @abc.abstractmethod
    def connected_peers(self) -> frozenset[str]:
        """Peer ids currently up."""

    def broadcast(self, data: bytes) -> None:
        for peer in self.connected_peers:
            self.send(peer, data)

    # Addresses come from discovery. An in-memory endpoint ignores them.
    def add_address(self, address_id: str, host: str, port: int) -> None:  # noqa: B027 - optional hook
        """Discovery found a peer reachable at host:port (idempotent per address_id)."""

    def remove_address(self, address_id: str) -> None:  # noqa: B027 - optional hook
        """Discovery says the peer behind address_id is gone."""
