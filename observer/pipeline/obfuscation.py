"""Replace user ids, room ids and network addresses with salted hashes before the pipeline stores
or reports anything (spec/observer.md §2.6; configured but never wired in by the reference).

The reference decoded the raw digest bytes as UTF-8 (garbage characters); we use the hex digest.
Hashes are cached: the same few ids repeat in every sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from observer.config.schema import hashlib_name
from observer.pipeline.settings import ANONYMIZATION, ObfuscatorSettings
from observer.samples.model import Sample

_CANDIDATE_LISTS = ("iceLocalCandidates", "iceRemoteCandidates")
_SFU_TRANSPORT_ADDRESSES = ("localAddress", "remoteAddress")


def make_hasher(algorithm: str, salt: str) -> Callable[[str], str]:
    name = hashlib_name(algorithm)
    hashlib.new(name)  # fails here, at construction, for an unknown algorithm
    salt_bytes = salt.encode("utf-8")

    @lru_cache(maxsize=65536)
    def hash_value(value: str) -> str:
        digest = hashlib.new(name)
        digest.update(value.encode("utf-8"))
        digest.update(salt_bytes)
        return digest.hexdigest()

    return hash_value


class Obfuscator:
    """Rewrites samples in place according to the settings (a no-op object when disabled)."""

    def __init__(self, settings: ObfuscatorSettings) -> None:
        self.enabled = settings.enabled and ANONYMIZATION in (
            settings.room_id, settings.user_id, settings.ice_addresses)
        self._room = settings.room_id == ANONYMIZATION
        self._user = settings.user_id == ANONYMIZATION
        self._addresses = settings.ice_addresses == ANONYMIZATION
        self._hash = make_hasher(settings.hash_algorithm, settings.hash_salt)

    def client_sample(self, sample: Sample) -> None:
        hash_value = self._hash
        if self._room:
            _hash_field(sample, "roomId", hash_value)
        if self._user:
            _hash_field(sample, "userId", hash_value)
        if self._addresses:
            for key in _CANDIDATE_LISTS:
                for candidate in _objects(sample.get(key)):
                    _hash_field(candidate, "address", hash_value)

    def sfu_sample(self, sample: Sample) -> None:
        if not self._addresses:
            return
        hash_value = self._hash
        for transport in _objects(sample.get("transports")):
            for key in _SFU_TRANSPORT_ADDRESSES:
                _hash_field(transport, key, hash_value)


def _objects(items: Any) -> list[dict[str, Any]]:
    if items.__class__ is not list:
        return []
    return [item for item in items if item.__class__ is dict]


def _hash_field(obj: dict[str, Any], key: str, hash_value: Callable[[str], str]) -> None:
    value = obj.get(key)
    if value is not None and value != "":
        obj[key] = hash_value(value if value.__class__ is str else str(value))
