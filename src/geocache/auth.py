"""Peer authentication: a mutual HMAC handshake over the cluster secret. No I/O.

Two messages each way; the node that dials is the client:

1. client -> server `GC.HELLO <client id> <client nonce>`
   server -> client `[server id, server nonce, server proof]`
2. client -> server `GC.AUTH <client proof>` (only once the server's proof checked out)
   server -> client `+OK`, and the connection may run peer commands.

Each proof is HMAC-SHA256(secret, transcript) over one `Transcript`: a direction label
(`server->client` or `client->server`), both nonces, both node ids and the channel
binding, each field length-prefixed so no two transcripts encode alike. What that buys:

- the secret never crosses the wire, and both sides prove it: a fake member that does
  not know it cannot answer step 1, so the dialing node sends it nothing else;
- a proof is good for one pair of fresh nonces, so a recorded exchange replays nowhere;
- the labels differ, so a server's proof is never a client's (a proof reflected back to
  the node that made it fails), and a node refuses a peer that claims its own id (a
  whole handshake reflected back to it);
- both ids are covered, so a proof relayed to a node other than the one it was made for
  names the wrong node: the dialing node checks the server's id against the member it
  meant to reach, when membership knows who is at that address.

Without TLS, a relay that forwards both directions live to the very node expected is a
TCP proxy, which no handshake can tell from the network; `binding` closes that gap: with
TLS on peer links both sides fold the TLS channel's binding bytes into every proof, so a
proof is useless on any other connection. Without TLS it is empty on both sides.
Without a secret configured, nothing can prove itself: a standalone node accepts no
peer commands at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

NONCE_BYTES = 16
# Hex nonces of 16 random bytes; a peer's nonce shorter than this is refused (a short
# or repeated nonce would let an attacker choose what the other side signs), longer is
# refused too (it bounds what a handshake makes this node hash).
NONCE_HEX_CHARS = 2 * NONCE_BYTES
SERVER_TO_CLIENT = b"server->client"
CLIENT_TO_SERVER = b"client->server"
# A node id is 1..128 printable ASCII characters without spaces (as in swim_messages).
MAX_NODE_ID_CHARS = 128
_DOMAIN = b"geocache peer handshake v2"


@dataclass(frozen=True, slots=True)
class Transcript:
    """What both proofs of one handshake cover."""

    client_id: str
    server_id: str
    client_nonce: bytes
    server_nonce: bytes
    # The TLS channel binding of the connection (empty without TLS); both ends must
    # read the same bytes from their side of the connection.
    binding: bytes = b""

    def encode(self, direction: bytes) -> bytes:
        fields = (
            _DOMAIN,
            direction,
            self.client_id.encode("utf-8", "surrogateescape"),
            self.server_id.encode("utf-8", "surrogateescape"),
            self.client_nonce,
            self.server_nonce,
            self.binding,
        )
        return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def new_nonce() -> bytes:
    return secrets.token_hex(NONCE_BYTES).encode()


def valid_nonce(nonce: bytes) -> bool:
    """A peer's nonce: exactly NONCE_HEX_CHARS lowercase hex digits."""
    return len(nonce) == NONCE_HEX_CHARS and all(c in b"0123456789abcdef" for c in nonce)


def valid_node_id(raw: bytes) -> bool:
    return 0 < len(raw) <= MAX_NODE_ID_CHARS and all(0x21 <= c <= 0x7E for c in raw)


def proof(secret: str, direction: bytes, transcript: Transcript) -> bytes:
    mac = hmac.new(secret.encode(), transcript.encode(direction), hashlib.sha256)
    return mac.hexdigest().encode()


def verify(secret: str, direction: bytes, transcript: Transcript, claimed: bytes) -> bool:
    """Whether `claimed` is the proof of `direction` over `transcript`, in constant time."""
    if not secret or not transcript.client_nonce or not transcript.server_nonce:
        return False
    return hmac.compare_digest(proof(secret, direction, transcript), claimed)


def channel_binding(ssl_object: object | None) -> bytes:
    """The binding bytes both ends fold into their proofs (empty on a plaintext link).

    The one place where TLS channel binding is wired: the server passes its side of the
    connection (`transport.get_extra_info("ssl_object")`), the dialing client its own.
    On TLS it is "tls-unique" (the only binding Python's ssl offers; both ends of a
    TLS 1.3 connection agree on it, and it differs per connection), so a proof made on
    one connection is worthless on another.
    """
    get = getattr(ssl_object, "get_channel_binding", None)
    if get is None:
        return b""
    binding = get("tls-unique")
    return binding if isinstance(binding, bytes) else b""
