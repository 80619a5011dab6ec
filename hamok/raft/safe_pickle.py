"""A restricted unpickler for the few pickles pysyncobj still makes.

hamok carries pysyncobj's messages as msgpack, but pysyncobj pickles three things itself:
the command of each log entry (``(funcID, args, kwargs)``), membership-change entries
(``['add', id, Node]``) and snapshots. Those bytes arrive from peers, so they are loaded
only through this unpickler, which admits plain data and pysyncobj's Node classes and
refuses every other global (``os.system``, ``builtins.eval`` ...).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("__builtin__", "object"),
        ("collections", "defaultdict"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),      # protocol 2 pickles bytes through codecs.encode
        ("pysyncobj.node", "Node"),
        ("pysyncobj.node", "TCPNode"),
        ("hamok.raft.node", "GridNode"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global that is not on the allow list."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"refused to unpickle global {module}.{name}")
        # copyreg._reconstructor may only rebuild allowed classes: it receives the class as an
        # argument that itself went through find_class, so the allow list still holds.
        return super().find_class(module, name)


def loads(data: bytes | str) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load(file: Any) -> Any:
    return RestrictedUnpickler(file).load()


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    return pickle.dumps(obj, 2)


def dump(obj: Any, file: Any, protocol: int | None = None) -> None:
    pickle.dump(obj, file, 2)


def to_bytes(data: bytes | str) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8")


class _SafePickleModule:
    """Stands in for ``pysyncobj.pickle`` inside pysyncobj's modules."""

    loads = staticmethod(loads)
    load = staticmethod(load)
    dumps = staticmethod(dumps)
    dump = staticmethod(dump)
    to_bytes = staticmethod(to_bytes)


_installed = False


def install() -> None:
    """Route every unpickling pysyncobj does through the restricted unpickler (idempotent)."""
    global _installed
    if _installed:
        return
    import pysyncobj.journal
    import pysyncobj.serializer
    import pysyncobj.syncobj

    safe = _SafePickleModule()
    pysyncobj.syncobj.pickle = safe
    pysyncobj.serializer.pickle = safe
    pysyncobj.journal.loads = loads
    _installed = True
