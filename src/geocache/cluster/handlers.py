"""The peer commands (`GC.*`): what one node asks another, served beside the code that asks.

The cluster builds these entries around itself (`peer_commands(cluster)`) and the node
adds them to its command table, so a standalone node has none of them. All but the
handshake are flagged `peer`: the command layer's `dispatch` refuses them on any
connection that has not proven the cluster secret.

- `GC.CHALLENGE` and `GC.AUTH` let a peer prove the cluster secret (geocache/auth.py).
- `GC.SWIM` carries membership (cluster.py); `GC.APPLY` / `GC.APPLYDEL` replication
  and hints; `GC.FWD` a command forwarded to its coordinator (router.py).
- `GC.DIGEST`, `GC.BUCKET b`, `GC.FETCH key` and `GC.REPAIR copy` serve repair
  (repair.py): a peer compares digests, lists differing buckets and pulls newer records.
- `GC.GEO` a batch from another region's stream (streams.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geocache import auth
from geocache.cluster import digest
from geocache.cluster.streams import decode_batch
from geocache.commands.context import Deferred, Session
from geocache.commands.strings import NOT_INTEGER
from geocache.commands.table import Command, dispatch, new_command
from geocache.protocol.types import OK, Error
from geocache.protocol.writer import encode
from geocache.store.counters import parse_int
from geocache.store.entry import EXPIRES_AT_MS, ORIGIN, VALUE, VERSION
from geocache.store.errors import StoreError

if TYPE_CHECKING:
    from geocache.cluster.cluster import Cluster

_NO_KEYS = (0, 0, 0)
AUTH_FAILED = Error("NOPERM cluster authentication failed")


def peer_commands(cluster: Cluster) -> list[Command]:
    """The cluster's command-table entries, bound to `cluster`."""
    h = PeerHandlers(cluster)
    entries = [
        ("gc.challenge", 1, "fast noauth", "Get a nonce", h.challenge),
        ("gc.auth", 3, "fast noauth", "Prove the secret", h.auth),
        ("gc.swim", 3, "fast peer", "A membership message", h.swim),
        ("gc.apply", 6, "write peer", "Apply a replicated write", h.apply),
        ("gc.applydel", 4, "write peer", "Apply a replicated delete", h.applydel),
        ("gc.fetch", 2, "readonly peer", "A key's entry or tombstone", h.fetch),
        ("gc.fwd", -4, "peer", "Run a forwarded command", h.fwd),
        ("gc.exec", -2, "peer", "Run a forwarded transaction", h.exec),
        ("gc.digest", 1, "readonly peer", "Bucket digests", h.digest),
        ("gc.bucket", 2, "readonly peer", "A bucket's records", h.bucket),
        ("gc.repair", 2, "fast peer", "Pull from the caller", h.repair),
        ("gc.geo", -2, "write peer", "Apply another region's writes", h.geo),
    ]
    return [
        new_command(name, arity, flags, _NO_KEYS, "cluster", summary, handler)
        for name, arity, flags, summary, handler in entries
    ]


class PeerHandlers:
    """The handlers of `peer_commands`, each `(session, argv) -> reply` as any command's."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    # -- the handshake -----------------------------------------------------------------------

    def challenge(self, session: Session, argv: list[bytes]) -> object:
        session.nonce = auth.new_nonce()
        return session.nonce

    def auth(self, session: Session, argv: list[bytes]) -> object:
        nonce, session.nonce = session.nonce, b""  # one proof per challenge
        node_id = argv[1].decode("utf-8", "surrogateescape")
        if not auth.verify(self._cluster.secret, nonce, node_id, argv[2]):
            return AUTH_FAILED
        session.peer_id = node_id
        session.authenticated = True
        return OK

    # -- membership and replication ------------------------------------------------------------

    def swim(self, session: Session, argv: list[bytes]) -> object:
        self._cluster.on_swim(argv[1].decode("utf-8", "surrogateescape"), argv[2])
        return OK

    def apply(self, session: Session, argv: list[bytes]) -> object:
        try:
            expires_at, version = int(argv[3]), int(argv[4])
        except ValueError:
            return NOT_INTEGER
        entry = (argv[2], expires_at, version, argv[5].decode("utf-8", "surrogateescape"))
        return 1 if self._cluster.store.apply(argv[1], entry) else 0

    def applydel(self, session: Session, argv: list[bytes]) -> object:
        try:
            version = int(argv[2])
        except ValueError:
            return NOT_INTEGER
        origin = argv[3].decode("utf-8", "surrogateescape")
        return 1 if self._cluster.store.apply_delete(argv[1], version, origin) else 0

    def fetch(self, session: Session, argv: list[bytes]) -> object:
        store = self._cluster.store
        entry = store.peek(argv[1])
        if entry is not None:
            return [entry[VALUE], entry[EXPIRES_AT_MS], entry[VERSION], entry[ORIGIN].encode()]
        tomb = store.tombstones.get(argv[1])
        return None if tomb is None else [tomb[0], tomb[1].encode(), tomb[2]]

    def fwd(self, session: Session, argv: list[bytes]) -> object:
        """Run a command another node forwarded, as its coordinator; reply with its RESP bytes.

        `GC.FWD proto version command...`: a write carries the version the forwarding node
        minted when its client asked (0 for a read), and gets exactly that version here. So
        a forwarded write that arrives late (held in a stalled connection while the client
        was answered through another owner) cannot overwrite the writes and deletes made
        since: if the key already holds that version or a newer one, it does nothing and
        answers `TRYAGAIN newer version <v>` (the forwarding node then mints a newer one).
        """
        proto = 3 if argv[1] == b"3" else 2
        try:
            version = int(argv[2])
        except ValueError:
            return encode(NOT_INTEGER, proto)
        inner = argv[3:]
        table = session.node.table
        cmd = table.get(inner[0]) or table.get(inner[0].lower())
        arity_ok = cmd is not None and (
            len(inner) == cmd.arity if cmd.arity > 0 else len(inner) >= -cmd.arity
        )
        if cmd is None or not arity_ok or cmd.first_key == 0:
            return encode(dispatch(table, session, inner), proto)
        keys = cmd.keys(inner)
        key = keys[0]
        cluster = self._cluster
        if version and cmd.write:
            newest = max((cluster.store.version_of(k) or (0,))[0] for k in keys)
            if newest >= version:
                return encode(Error(f"TRYAGAIN newer version {newest}"), proto)
        elif len(keys) > 1 or cmd.name == b"mget":
            # A group of a multi-key read (router.py): each key read as here it would be.
            reply = cluster.router.dispatch(table, session, inner)
            if isinstance(reply, Deferred):
                return Deferred(_encoded_later(reply, proto))
            return encode(reply, proto)
        reply = cluster.router.coordinate(
            table, session, inner, cmd, key, version if cmd.write else 0
        )
        if isinstance(reply, Deferred):
            return Deferred(_encoded_later(reply, proto))
        return encode(reply, proto)

    def exec(self, session: Session, argv: list[bytes]) -> object:
        """`GC.EXEC proto n1 argv1... n2 argv2...`: a transaction another node queued for
        this slot's primary, run here in one go (MULTI, the commands, EXEC) and its
        writes replicated; the reply is EXEC's, as RESP bytes in the client's protocol."""
        proto = 3 if argv[1] == b"3" else 2
        try:
            queued = _decode_commands(argv[2:])
        except ValueError as exc:
            return encode(Error(f"ERR bad GC.EXEC: {exc}"), proto)
        saved = session.multi, session.multi_dirty, session.watched
        session.multi, session.multi_dirty, session.watched = queued, False, {}
        try:
            reply, _wrote = self._cluster.router.run_here(session.node.table, session, [b"EXEC"])
        finally:
            session.multi, session.multi_dirty, session.watched = saved
        if isinstance(reply, Deferred):
            return Deferred(_encoded_later(reply, proto))
        return encode(reply, proto)

    # -- repair and regions --------------------------------------------------------------------

    def digest(self, session: Session, argv: list[bytes]) -> object:
        """This node's 1024 bucket digests, 8 KiB of little-endian uint64s."""
        return digest.encode_buckets(self._cluster.store.digest.buckets)

    def bucket(self, session: Session, argv: list[bytes]) -> object:
        """Flat key, version, origin, is_tombstone for every record held in one bucket."""
        try:
            bucket = parse_int(argv[1])
        except StoreError:
            return NOT_INTEGER
        if not 0 <= bucket < digest.BUCKETS:
            return Error(f"ERR bucket must be 0..{digest.BUCKETS - 1}")
        return digest.encode_records(self._cluster.store.digest.keys_in_bucket(bucket))

    def repair(self, session: Session, argv: list[bytes]) -> object:
        """Run a repair round against the calling peer soon; `1`: copy keys this node lacks."""
        self._cluster.repairer.request(session.peer_id, copy_missing=argv[1] == b"1")
        return OK

    def geo(self, session: Session, argv: list[bytes]) -> object:
        """A batch from another region's stream (streams.py): applied at this region's
        owners; the reply is this node's wall clock once they have it (for the lag)."""
        try:
            writes = decode_batch(argv[2:])
        except ValueError as exc:
            return Error(f"ERR bad GC.GEO batch: {exc}")
        return Deferred(self._cluster.streams.receive(writes))


def _decode_commands(flat: list[bytes]) -> list[list[bytes]]:
    """`n argv...` groups, as `Cluster.forward_exec` sends them."""
    commands: list[list[bytes]] = []
    i = 0
    while i < len(flat):
        n = int(flat[i])
        if n < 1 or i + 1 + n > len(flat):
            raise ValueError("truncated command list")
        commands.append(flat[i + 1 : i + 1 + n])
        i += 1 + n
    return commands


async def _encoded_later(deferred: Deferred, proto: int) -> bytes:
    return encode(await deferred.awaitable, proto)
