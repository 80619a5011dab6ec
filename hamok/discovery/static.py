"""A fixed list of peer addresses."""

from __future__ import annotations

from collections.abc import Mapping

from ..transport.base import Endpoint
from .base import Discovery


class StaticDiscovery(Discovery):
    """Hands every configured peer to the endpoint, except the one at ``local_address``.

    Every daemon of a cluster can share one peer list: the entry that is this process is
    skipped (and, should the host spelling differ, the endpoint recognises its own
    handshake and stops dialling it). The endpoint keeps redialling a peer that goes
    away, so nothing needs re-adding later.
    """

    def __init__(
        self, peers: Mapping[str, tuple[str, int]], local_address: tuple[str, int] | None = None
    ) -> None:
        for name, address in peers.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"static peer names must be non-empty strings, got {name!r}")
            host, port = address
            if not isinstance(host, str) or not host:
                raise ValueError(f"static peer {name!r}: host must be a non-empty string, got {host!r}")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"static peer {name!r}: port must be an integer in 1..65535, got {port!r}")
        self._peers = {name: (host, port) for name, (host, port) in peers.items()}
        self._local = local_address

    @property
    def peers(self) -> Mapping[str, tuple[str, int]]:
        return dict(self._peers)

    async def start(self, endpoint: Endpoint) -> None:
        for name, (host, port) in self._peers.items():
            if (host, port) == self._local:
                continue
            endpoint.add_address(name, host, port)

    async def stop(self) -> None:
        return None
