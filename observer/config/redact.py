"""Masking secrets in a configuration tree before it is logged or printed.

Keys are judged by name, so the free-form sink configs (Kafka ``properties``, AWS ``credentials``,
Mongo ``connection``) are covered without knowing every sink's schema; credentials embedded in URIs
(``mongodb://user:pass@host``) are masked in every string value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "<redacted>"

# substrings of a key (lowercased, punctuation removed) that mark its value as secret
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",  # secretAccessKey, hamok secret, client secrets
    "token",  # sessionToken, access tokens
    "salt",  # obfuscations.hashSalt
    "apikey",
    "privatekey",
    "accesskey",  # accessKeyId
    "jaasconfig",  # Kafka sasl.jaas.config embeds the password
    "credential",  # a credentials string (blocks are walked instead)
)
_URI_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<password>[^/@\s]*)@"
)


def is_secret_key(key: str) -> bool:
    flat = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(part in flat for part in _SECRET_KEY_PARTS)


def redact(tree: Any) -> Any:
    """A copy of ``tree`` (dicts, lists, scalars) with secret values replaced by ``<redacted>``."""
    return _walk(tree, secret=False)


def _walk(value: Any, *, secret: bool) -> Any:
    if isinstance(value, Mapping):
        # a block under a secret-looking key (``credentials: {type, config}``) is judged key by key
        return {key: _walk(item, secret=is_secret_key(str(key))) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, secret=secret) for item in value]
    if value is None or value == "":
        return value  # shows that the secret is unset
    if secret:
        return MASK
    if isinstance(value, str):
        return _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
    return value
