"""What a discovery does: tell the endpoint where peers can be reached."""

from __future__ import annotations

import abc

from ..transport.base import Endpoint


class Discovery(abc.ABC):
    """Feeds peer addresses to an endpoint (``add_address`` / ``remove_address``).

    Discovery only knows addresses; who is behind one (the peer id) is learned by the
    endpoint's handshake. ``stop()`` stops looking for changes and leaves the addresses
    already given in place: the endpoint is stopped right after it anyway, and removing
    them first would only report every peer as lost during a shutdown.
    """

    @abc.abstractmethod
    async def start(self, endpoint: Endpoint) -> None:
        """Begin feeding ``endpoint``; returns once the first addresses (if any) are handed over
        or a background task is looking for them."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop looking for changes; idempotent."""
