"""Settings of the samples sources (the ``observer.sources`` config block)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000


def _service_ids(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class SourceSettings:
    """
    - ``allowed_service_ids``: ``None`` allows every serviceId. A request for another serviceId is refused
      before anything is decoded: REST 403, websocket close 4231 (see ``observer.sources.websocket``).
    - ``use_server_timestamp``: replace every sample's ``timestamp`` with the receive time (epoch ms).
    - ``max_payload_bytes``: largest REST body / websocket message; larger ones get 413 / close 1009.
    - ``keepalive_interval_s``: after accepting a websocket message, send the text frame ``"message"`` if
      the previous one was sent longer ago than this (what the reference observer does for its clients).
    """

    rest_enabled: bool = True
    websocket_enabled: bool = True
    accept_client_samples: bool = True
    accept_sfu_samples: bool = True
    use_server_timestamp: bool = False
    allowed_service_ids: frozenset[str] | None = attrs.field(default=None, converter=_service_ids)
    max_payload_bytes: int = attrs.field(default=DEFAULT_MAX_PAYLOAD_BYTES, validator=attrs.validators.gt(0))
    keepalive_interval_s: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))

    def service_allowed(self, service_id: str) -> bool:
        return self.allowed_service_ids is None or service_id in self.allowed_service_ids
