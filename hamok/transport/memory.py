"""An in-process network of endpoints with fault injection, for deterministic tests.

Delivery is scheduled on the event loop (never synchronous), so message interleavings are
those of a real network: frames between a pair keep their order unless a fault reorders
them. All randomness comes from the network's own seeded ``random.Random``, so a failing
seed reproduces.
"""

from __future__ import annotations

import asyncio
import random

import attrs

from .base import Endpoint


@attrs.define
class Faults:
    """Per-link fault probabilities and delays (seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0          # probability a frame is held back by reorder_delay
    delay: float = 0.0            # fixed latency
    jitter: float = 0.0           # extra uniform latency in [0, jitter]
    reorder_delay: float = 0.005


class InMemoryNetwork:
    def __init__(self, seed: int = 0, faults: Faults | None = None) -> None:
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.endpoints: dict[str, InMemoryEndpoint] = {}
        self._link_faults: dict[tuple[str, str], Faults] = {}
        self._partitions: list[frozenset[str]] = []
        self.frames_delivered = 0
        self.frames_dropped = 0

    def endpoint(self, local_id: str) -> InMemoryEndpoint:
        ep = InMemoryEndpoint(local_id, self)
        self.endpoints[local_id] = ep
        return ep

    # ---- faults
    def set_link_faults(self, a: str, b: str, faults: Faults) -> None:
        """Faults on the directed link a -> b."""
        self._link_faults[(a, b)] = faults

    def partition(self, *groups: set[str] | frozenset[str]) -> None:
        """Split the network: frames cross only within a group. Peers across groups go down."""
        self._partitions = [frozenset(g) for g in groups]
        self._refresh_links()

    def heal(self) -> None:
        self._partitions = []
        self._refresh_links()

    def can_reach(self, a: str, b: str) -> bool:
        if a == b:
            return False
        ea, eb = self.endpoints.get(a), self.endpoints.get(b)
        if ea is None or eb is None or not ea.running or not eb.running:
            return False
        if not self._partitions:
            return True
        return any(a in g and b in g for g in self._partitions)

    def _refresh_links(self) -> None:
        for ep in self.endpoints.values():
            if ep.running:
                ep._refresh()

    # ---- delivery
    def _transmit(self, source: str, destination: str, data: bytes) -> None:
        faults = self._link_faults.get((source, destination), self.faults)
        rng = self.rng
        if faults.drop and rng.random() < faults.drop:
            self.frames_dropped += 1
            return
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            delay = faults.delay + (rng.random() * faults.jitter if faults.jitter else 0.0)
            if faults.reorder and rng.random() < faults.reorder:
                delay += faults.reorder_delay
            if delay > 0:
                loop.call_later(delay, self._deliver, source, destination, data)
            else:
                loop.call_soon(self._deliver, source, destination, data)

    def _deliver(self, source: str, destination: str, data: bytes) -> None:
        # re-check at delivery time: a partition or a stop in between loses the frame
        if not self.can_reach(source, destination):
            self.frames_dropped += 1
            return
        ep = self.endpoints[destination]
        if ep._listener is not None and source in ep._up:
            self.frames_delivered += 1
            ep._listener.on_frame(source, data)


class InMemoryEndpoint(Endpoint):
    def __init__(self, local_id: str, network: InMemoryNetwork) -> None:
        super().__init__(local_id)
        self.network = network
        self.running = False
        self._up: set[str] = set()

    async def start(self) -> None:
        self.running = True
        self.network._refresh_links()

    async def stop(self) -> None:
        self.running = False
        for peer in sorted(self._up):
            self._up.discard(peer)
            if self._listener is not None:
                self._listener.on_peer_down(peer)
        self.network._refresh_links()

    def _refresh(self) -> None:
        reachable = {p for p in self.network.endpoints if self.network.can_reach(self.local_id, p)}
        for peer in sorted(self._up - reachable):
            self._up.discard(peer)
            if self._listener is not None:
                self._listener.on_peer_down(peer)
        for peer in sorted(reachable - self._up):
            self._up.add(peer)
            if self._listener is not None:
                self._listener.on_peer_up(peer)

    def send(self, destination: str, data: bytes) -> bool:
        if not self.running or destination not in self._up:
            return False
        self.network._transmit(self.local_id, destination, data)
        return True

    @property
    def connected_peers(self) -> frozenset[str]:
        return frozenset(self._up)
