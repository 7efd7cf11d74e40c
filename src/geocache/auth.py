"""Peer authentication: an HMAC challenge over the cluster secret.

A node that connects to a peer asks `GC.CHALLENGE` and gets a random nonce; it answers
`GC.AUTH <node id> <hex HMAC-SHA256(secret, nonce | node id)>`. The peer checks the
proof in constant time and only then accepts `GC.*` commands on that connection. The
secret never crosses the wire, and a nonce is good for one proof on one connection, so
a recorded exchange cannot be replayed. Without a secret configured, no connection can
prove itself: a standalone node accepts no peer commands at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 16


def new_nonce() -> bytes:
    return secrets.token_hex(NONCE_BYTES).encode()


def proof(secret: str, nonce: bytes, node_id: str) -> bytes:
    mac = hmac.new(secret.encode(), nonce + b"|" + node_id.encode(), hashlib.sha256)
    return mac.hexdigest().encode()


def verify(secret: str, nonce: bytes, node_id: str, claimed: bytes) -> bool:
    if not secret or not nonce:
        return False
    return hmac.compare_digest(proof(secret, nonce, node_id), claimed)
