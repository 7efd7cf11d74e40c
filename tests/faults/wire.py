"""Talking RESP to nodes from the test process: values in, values out, with deadlines.

Connections are support.resp's `RawClient` (every read has a deadline); replies are
decoded by geocache's own sans-IO `ReplyReader`, so an error reply is an `Error` value,
not an exception, and the workload can record it as an outcome. `peer()` proves the
cluster secret (GC.HELLO, GC.AUTH), which the introspection commands that read a
node's records (GC.BUCKET, GC.FETCH) need.
"""

from __future__ import annotations

from collections.abc import Sequence

from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from support.cluster import prove_peer
from support.resp import Arg, RawClient

__all__ = ["Error", "call", "connect", "peer", "pipeline"]

# The checker's peer name in GC.HELLO, shown in the nodes' logs.
PEER_NAME = "fault-checker"


def decode(raw: bytes) -> object:
    reader = ReplyReader()
    reader.feed(raw)
    return reader.gets()


def connect(addr: str, port: int, timeout_s: float) -> RawClient:
    return RawClient(addr, port, timeout_s=timeout_s)


def call(conn: RawClient, *argv: Arg) -> object:
    return decode(conn.call(*argv))


def pipeline(conn: RawClient, commands: Sequence[Sequence[Arg]]) -> list[object]:
    conn.send_many(commands)
    return [decode(raw) for raw in conn.read_replies(len(commands))]


def peer(addr: str, port: int, timeout_s: float = 10.0) -> RawClient:
    """A connection that proved the cluster secret; the caller closes it."""
    conn = connect(addr, port, timeout_s)
    try:
        reply = prove_peer(lambda *argv: call(conn, *argv), PEER_NAME)
        if isinstance(reply, Error):
            raise ConnectionError(f"GC.AUTH answered {reply}")
    except BaseException:
        conn.close()
        raise
    return conn
