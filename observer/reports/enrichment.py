"""What the pipeline found out about a sample's elements and the report builders copy into reports."""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class RemoteTrack:
    """The remote outbound track an inbound track was matched to (spec/observer.md §6.1)."""

    client_id: str | None
    user_id: str | None = None
    peer_connection_id: str | None = None
    track_id: str | None = None


@attrs.frozen(slots=True)
class PadEnrichment:
    """Who an SFU RTP pad belongs to (§6.2) and, for internal inbound pads, the matched outbound
    pad of the remote SFU (§6.3)."""

    call_id: str | None = None
    client_id: str | None = None
    track_id: str | None = None
    remote_sfu_id: str | None = None
    remote_transport_id: str | None = None
    remote_sink_id: str | None = None
    remote_rtp_pad_id: str | None = None

    @property
    def has_remote(self) -> bool:
        return self.remote_rtp_pad_id is not None
