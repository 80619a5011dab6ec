"""Capped exponential backoff with jitter, shared by the dialers and by discovery."""

from __future__ import annotations

import random


class Backoff:
    """Delays base, 2*base, 4*base, ... up to cap, each scaled by a random factor in [0.5, 1].

    The jitter keeps peers that lost each other at the same moment from redialling in
    lockstep; the floor of half the nominal delay keeps the growth meaningful.
    """

    def __init__(self, base_s: float, cap_s: float, *, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff needs 0 < base ({base_s}) <= cap ({cap_s})")
        self._base = base_s
        self._cap = cap_s
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        # the exponent is clamped so that a long outage cannot overflow the float
        nominal = min(self._cap, self._base * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return nominal * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._attempt = 0
