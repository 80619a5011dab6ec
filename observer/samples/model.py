"""Data handed from the decoder to the sources and from the sources to the pipeline.

A decoded sample is a plain ``dict`` shaped like the JSON wire format (Avro camelCase field names), not an
attrs class: frames carry 12-20 KB of stats and the observer must decode thousands of client samples per
second on one core, so the decoder only normalizes the identity fields the pipeline relies on
(see ``observer.samples.normalize``) and leaves every stats field as the monitor sent it.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

Sample = dict[str, Any]


class SamplesError(ValueError):
    """A frame (or the format/version it is declared with) cannot be decoded; the message says why."""


@attrs.frozen
class Rejection:
    """One sample of a decoded frame that was dropped individually; the rest of the frame is kept.

    ``kind`` is ``"client"`` or ``"sfu"``, ``index`` the position in the frame's ``clientSamples`` /
    ``sfuSamples`` list, ``field`` the offending field path (e.g. ``clientId`` or
    ``inboundAudioTracks[1].ssrc``) and ``reason`` one of the ``REASON_*`` constants.
    """

    kind: str
    index: int
    field: str
    reason: str


REASON_MISSING_FIELD = "missing_field"
REASON_INVALID_FIELD = "invalid_field"
REASON_NOT_AN_OBJECT = "not_an_object"


@attrs.frozen
class DecodedSamples:
    client_samples: list[Sample]
    sfu_samples: list[Sample]
    rejected: list[Rejection]


@attrs.frozen
class ReceivedSamples:
    """The valid samples of one frame, with the ids taken from the URL path (never from the payload)."""

    service_id: str
    media_unit_id: str
    client_samples: list[Sample]
    sfu_samples: list[Sample]
    received_at_ms: int


class SamplesConsumer(Protocol):
    def accept(self, samples: ReceivedSamples) -> None:
        """Take one frame's samples without blocking (the pipeline buffers them)."""

    async def ready(self) -> None:
        """Return when the consumer can take more; the sources await it before reading the next frame
        (websocket) or answering (REST), so a flood slows the monitors down instead of piling up."""
