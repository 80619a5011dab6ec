"""Typed exceptions raised by hamok's public API."""

from __future__ import annotations


class HamokError(Exception):
    """Base class of every error hamok raises to its callers."""


class HamokTimeoutError(HamokError, TimeoutError):
    """A request or a replicated write did not complete in time."""


class NoLeaderError(HamokError):
    """No Raft leader was known for longer than the write timeout allowed."""


class NotFoundError(HamokError, KeyError):
    """A storage or an entry that must exist was not found."""


class ClosedError(HamokError):
    """The grid, a storage or an endpoint was used after it was closed."""


class UnsupportedOperationError(HamokError):
    """The storage kind does not support the operation (e.g. evict on a replicated storage)."""


class AuthenticationError(HamokError):
    """A peer failed the shared-secret challenge."""


class DecodeError(HamokError, ValueError):
    """Bytes from the network could not be decoded into a message."""
