"""Shared-secret challenge/response run inside the websocket handshake.

Each side sends a fresh nonce in its HELLO and proves knowledge of the secret with
HMAC-SHA256 over both ids and both nonces. The proof names the prover's role, so a proof
cannot be reflected back to the side that made it, and the dialler proves first: the
listener reveals its proof only after checking the dialler's, so a stranger who connects
to our port learns nothing it could replay elsewhere.

What this does not give: encryption or per-frame integrity. A host that discovery points
us at could relay a handshake; run the port on a trusted network (or a NetworkPolicy /
service mesh with TLS) when that matters.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os

import msgpack

from .wire import NONCE_BYTES, Hello

PROOF_BYTES = hashlib.sha256().digest_size
_CONTEXT = "hamok-auth-v1"


class Role(enum.Enum):
    DIALLER = "dialler"
    LISTENER = "listener"


def normalize_secret(secret: bytes | str | None) -> bytes | None:
    if secret is None:
        return None
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise ValueError("secret must not be empty (pass None to run without authentication)")
    return raw


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def proof(secret: bytes, role: Role, prover: Hello, verifier: Hello) -> bytes:
    # msgpack gives every field a length prefix, so no two field splits hash alike
    message = msgpack.packb(
        [_CONTEXT, role.value, prover.peer_id, prover.incarnation, prover.nonce,
         verifier.peer_id, verifier.incarnation, verifier.nonce],
        use_bin_type=True,
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


def verify(secret: bytes, role: Role, prover: Hello, verifier: Hello, candidate: bytes) -> bool:
    return hmac.compare_digest(proof(secret, role, prover, verifier), candidate)
