"""What the pipeline and the expirer need to know from the observer configuration.

Defaults equal the seed's (spec/observer.md §10). Idle limits are seconds, buffer times ms.
"""

from __future__ import annotations

from typing import Any

import attrs

MASTER = "master"
SLAVE = "slave"
NONE = "none"
ANONYMIZATION = "anonymization"


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name}: must be > 0, got {value}")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: must be >= 0, got {value}")


def _lower(value: Any) -> str:
    return str(value).strip().lower()


@attrs.frozen
class CollectorSettings:
    """A buffer flushed at ``max_items`` or ``max_time_ms`` after its first item. With an
    ``overload_threshold`` (> 0; raised to at least ``max_items``) a flush that finds more than
    that many items still waiting counts as overloaded, and after ``max_consecutive_overloaded``
    overloaded flushes in a row the flushed batch is dropped (counted)."""

    max_items: int = attrs.field(default=100, validator=_positive)
    max_time_ms: int = attrs.field(default=1000, validator=_non_negative)
    overload_threshold: int = -1
    max_consecutive_overloaded: int = attrs.field(default=3, validator=_positive)

    @property
    def overload_limit(self) -> int | None:
        if self.overload_threshold < 0:
            return None
        return max(self.overload_threshold, self.max_items)


@attrs.frozen
class MaxIdleSettings:
    """Seconds an entity may go untouched before the expirer removes it."""

    call_s: int = attrs.field(default=300, validator=_positive)
    client_s: int = attrs.field(default=300, validator=_positive)
    peer_connection_s: int = attrs.field(default=300, validator=_positive)
    inbound_track_s: int = attrs.field(default=300, validator=_positive)
    outbound_track_s: int = attrs.field(default=300, validator=_positive)
    sfu_s: int = attrs.field(default=300, validator=_positive)
    sfu_transport_s: int = attrs.field(default=300, validator=_positive)
    sfu_inbound_rtp_pad_s: int = attrs.field(default=300, validator=_positive)
    sfu_outbound_rtp_pad_s: int = attrs.field(default=300, validator=_positive)
    sfu_sctp_channel_s: int = attrs.field(default=300, validator=_positive)

    def shortest_s(self) -> int:
        return min(attrs.astuple(self))


@attrs.frozen
class ObfuscatorSettings:
    """Hash ids and addresses before anything is stored or reported (spec §2.6; the reference
    never wired this in). The hash is the hex digest of ``value + salt``."""

    enabled: bool = False
    ice_addresses: str = attrs.field(default=NONE, converter=_lower,
                                     validator=attrs.validators.in_((NONE, ANONYMIZATION)))
    room_id: str = attrs.field(default=NONE, converter=_lower,
                               validator=attrs.validators.in_((NONE, ANONYMIZATION)))
    user_id: str = attrs.field(default=NONE, converter=_lower,
                               validator=attrs.validators.in_((NONE, ANONYMIZATION)))
    hash_algorithm: str = "SHA-256"
    hash_salt: str = "MySalt"


@attrs.frozen
class PipelineSettings:
    call_id_assign_mode: str = attrs.field(default=MASTER, converter=_lower,
                                           validator=attrs.validators.in_((MASTER, SLAVE)))
    call_updater_enabled: bool = True
    # clientSamplesAnalyser
    drop_unmatched_reports: bool = False
    match_tracks: bool = True
    # sfuSamplesAnalyser
    drop_unmatched_internal_inbound_reports: bool = False
    drop_unmatched_inbound_reports: bool = False
    drop_unmatched_outbound_reports: bool = False
    match_rtp_pads: bool = True
    max_idle: MaxIdleSettings = attrs.field(factory=MaxIdleSettings)
    samples_collector: CollectorSettings = attrs.field(factory=CollectorSettings)
    reports_collector: CollectorSettings = attrs.field(
        factory=lambda: CollectorSettings(max_items=5000, max_time_ms=2000))
    obfuscator: ObfuscatorSettings = attrs.field(factory=ObfuscatorSettings)
    use_backups: bool = False
    # ours: client samples whose room's call is not available yet (being created by another
    # daemon, or ended and its room not yet released) are retried with later batches this long
    deferred_samples_max_ms: int = attrs.field(default=5000, validator=_non_negative)
    # ours: ``ready()`` waits while more samples than this are buffered or queued (0: never waits)
    max_pending_samples: int = attrs.field(default=2000, validator=_non_negative)
    # ours: how many recently replaced calls a room remembers in slave mode
    room_ended_calls_memory: int = attrs.field(default=8, validator=_positive)
