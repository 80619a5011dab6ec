"""Grid configuration: attrs classes with the seed's keys, validated with clear errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import HamokError


class ConfigError(HamokError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name}: must be > 0, got {value}")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name}: must be >= 0, got {value}")


@attrs.frozen
class GridConfig:
    """Timing and identity of one grid member.

    ``heartbeat_ms`` is the raft append-entries period; a follower that hears no leader for
    ``follower_max_idle_ms`` (randomised up to 2x) starts an election; the leader removes a
    member it has not been connected to for ``peer_max_idle_ms``; an isolated member (no
    connected peer) becomes a standalone single-node cluster after the same time, so a lone
    survivor keeps serving. ``log_retention_ms`` bounds how long raft log entries are kept
    before they are compacted into a snapshot.
    """

    local_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    heartbeat_ms: int = attrs.field(default=50, validator=_positive)
    follower_max_idle_ms: int = attrs.field(default=300, validator=_positive)
    peer_max_idle_ms: int = attrs.field(default=1000, validator=_positive)
    request_timeout_ms: int = attrs.field(default=3000, validator=_positive)
    log_retention_ms: int = attrs.field(default=5 * 60_000, validator=_non_negative)
    log_compaction_min_entries: int = attrs.field(default=5000, validator=_positive)
    max_message_keys: int = attrs.field(default=1000, validator=_positive)
    standalone_when_isolated: bool = True
    tick_interval_ms: int = attrs.field(default=10, validator=_positive)
    throw_on_request_timeout: bool = False   # False: a timed out request returns the partial responses

    def __attrs_post_init__(self) -> None:
        if not self.local_id:
            raise ConfigError("local_id: must not be empty")
        if self.follower_max_idle_ms <= 3 * self.heartbeat_ms:
            # a follower must hear several heartbeats before it may suspect the leader
            raise ConfigError(
                f"follower_max_idle_ms: must be more than 3 x heartbeat_ms ({3 * self.heartbeat_ms}), "
                f"got {self.follower_max_idle_ms}"
            )

    # seed key -> attribute
    _SEED_KEYS = {
        "heartbeatInMs": "heartbeat_ms",
        "followerMaxIdleInMs": "follower_max_idle_ms",
        "peerMaxIdleInMs": "peer_max_idle_ms",
        "requestTimeoutInMs": "request_timeout_ms",
        "maxMessageKeys": "max_message_keys",
        "standaloneWhenIsolated": "standalone_when_isolated",
    }
    # keys the seed had that this implementation accepts and does not need
    _IGNORED_SEED_KEYS = frozenset(
        {"sendingHelloTimeoutInMs", "applicationCommitIndexSyncTimeoutInMs", "electionTimeoutInMs"}
    )

    @classmethod
    def from_seed(cls, storage_grid: Mapping[str, Any], *, local_id: str | None = None,
                  path: str = "storageGrid") -> GridConfig:
        """Build from the seed's ``storageGrid`` block (camelCase keys, minutes for retention)."""
        kwargs: dict[str, Any] = {}
        for key, value in storage_grid.items():
            if key in cls._SEED_KEYS:
                kwargs[cls._SEED_KEYS[key]] = _as_int(value, f"{path}.{key}") if key != (
                    "standaloneWhenIsolated") else bool(value)
            elif key == "raftMaxLogEntriesRetentionTimeInMinutes":
                kwargs["log_retention_ms"] = _as_int(value, f"{path}.{key}") * 60_000
            elif key in cls._IGNORED_SEED_KEYS:
                continue
            else:
                raise ConfigError(f"{path}.{key}: unknown key")
        if local_id:
            kwargs["local_id"] = local_id
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{path}.{exc}") from None


def _as_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise ConfigError(f"{path}: must be an integer, got {value!r}")
    try:
        result = int(value)
    except ValueError:
        raise ConfigError(f"{path}: must be an integer, got {value!r}") from None
    if isinstance(value, float) and value != result:
        raise ConfigError(f"{path}: must be an integer, got {value!r}")
    return result
