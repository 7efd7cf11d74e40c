"""The peer commands (`GC.*`): what one node asks another, served beside the code that asks.

The cluster builds these entries around itself (`peer_commands(cluster)`) and the node
adds them to its command table, so a standalone node has none of them. All but the
handshake are flagged `peer`: the command layer's `dispatch` refuses them on any
connection that has not proven the cluster secret.

- `GC.HELLO` and `GC.AUTH`: the mutual handshake in which this node, as the server,
  proves the cluster secret first and then checks the dialing peer's proof (auth.py).
  A refused handshake is counted, logged (rate-limited) and closes the connection.
- `GC.SWIM` carries membership (cluster.py) and the sender's wall clock (skew check);
  `GC.APPLYBATCH` replication (a batch of records a request, replication.py),
  `GC.APPLY` / `GC.APPLYDEL` hints and the region streams' records; `GC.FWD` a
  command forwarded to its coordinator (router.py).
- `GC.DIGEST`, `GC.EVICTED`, `GC.BUCKET b`, `GC.FETCH key` and `GC.REPAIR copy` serve
  repair (repair.py): a peer compares digests, lists differing buckets and pulls newer
  records, and drops what an owner evicted a newer version of; `GC.WARM max_bytes b...`
  sends whole buckets to a node warming up (warmup.py).
- `GC.GEO` a batch from another region's stream (streams.py).

Versions are checked where they enter: a replicated, forwarded, flush or cross-region version
the clock does not admit (more than `max_clock_skew_ms` ahead of this node's wall
clock, or out of range) is refused with an error reply, counted and logged, and
changes nothing (the store refuses it, clock.py says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geocache import auth
from geocache.cluster import digest, records, warmup
from geocache.cluster.streams import decode_batch
from geocache.commands.context import Deferred, Session
from geocache.commands.strings import NOT_INTEGER
from geocache.commands.table import Command, dispatch, new_command
from geocache.protocol.types import OK, Error
from geocache.protocol.writer import encode
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError, VersionRefused

if TYPE_CHECKING:
    from geocache.cluster.cluster import Cluster

_NO_KEYS = (0, 0, 0)
AUTH_FAILED = Error("NOPERM cluster authentication failed")
ALREADY_PROVEN = Error("ERR this connection has proven the cluster secret already")


def peer_commands(cluster: Cluster) -> list[Command]:
    """The cluster's command-table entries, bound to `cluster`."""
    h = PeerHandlers(cluster)
    entries = [
        ("gc.hello", 3, "fast noauth", "Start the handshake", h.hello),
        ("gc.auth", 2, "fast noauth", "Prove the secret", h.auth),
        ("gc.swim", -3, "fast peer", "A membership message", h.swim),
        ("gc.apply", -6, "write peer", "Apply a replicated write", h.apply),
        ("gc.applydel", -4, "write peer", "Apply a replicated delete", h.applydel),
        ("gc.applybatch", -1, "write peer", "Apply a batch of replicated writes", h.applybatch),
        ("gc.fetch", 2, "readonly peer", "A key's entry or tombstone", h.fetch),
        ("gc.fwd", -4, "peer", "Run a forwarded command", h.fwd),
        ("gc.exec", -2, "peer", "Run a forwarded transaction", h.exec),
        ("gc.flush", 2, "write peer", "A cluster-wide flush at a version", h.flush),
        ("gc.digest", 1, "readonly peer", "Bucket digests", h.digest),
        ("gc.bucket", 2, "readonly peer", "A bucket's records", h.bucket),
        ("gc.evicted", 1, "readonly peer", "Newest version evicted per bucket", h.evicted),
        ("gc.repair", 2, "fast peer", "Pull from the caller", h.repair),
        ("gc.warm", -3, "readonly peer", "Whole buckets' records, for warm-up", h.warm),
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

    def hello(self, session: Session, argv: list[bytes]) -> object:
        """`GC.HELLO <client id> <client nonce>`: this node proves the secret first, over
        both nonces and both ids, and keeps the transcript for the client's proof."""
        cluster = self._cluster
        session.handshake = None
        if session.peer_id:
            return ALREADY_PROVEN
        raw_id, client_nonce = argv[1], argv[2]
        if not auth.valid_node_id(raw_id) or not auth.valid_nonce(client_nonce):
            return self._refuse(session, "", "malformed GC.HELLO")
        client_id = raw_id.decode()
        if client_id == cluster.node_id:
            # Only a handshake reflected back to this node (or a seed naming this very
            # node under another address) claims this node's own id.
            return self._refuse(session, client_id, "a peer claimed this node's own id")
        transcript = auth.Transcript(
            client_id, cluster.node_id, client_nonce, auth.new_nonce(), session.channel_binding
        )
        session.handshake = transcript
        server_proof = auth.proof(cluster.secret, auth.SERVER_TO_CLIENT, transcript)
        return [cluster.node_id.encode(), transcript.server_nonce, server_proof]

    def auth(self, session: Session, argv: list[bytes]) -> object:
        """`GC.AUTH <client proof>`: one try per GC.HELLO; on success the connection is
        the peer's, which may then run peer commands."""
        transcript, session.handshake = session.handshake, None  # one proof per handshake
        if transcript is None:
            return self._refuse(session, "", "GC.AUTH without GC.HELLO")
        claimed = argv[1]
        if not auth.verify(self._cluster.secret, auth.CLIENT_TO_SERVER, transcript, claimed):
            return self._refuse(session, transcript.client_id, "wrong proof of the secret")
        session.peer_id = transcript.client_id
        session.authenticated = True
        self._cluster.trust.handshake_proven()
        return OK

    def _refuse(self, session: Session, claimed_id: str, reason: str) -> Error:
        """A refused handshake: counted, logged, and the connection closed after the reply."""
        session.closing = True
        self._cluster.trust.handshake_refused(session.addr, claimed_id, reason)
        return AUTH_FAILED

    # -- membership and replication ------------------------------------------------------------

    def swim(self, session: Session, argv: list[bytes]) -> object:
        """`GC.SWIM <from addr> <message> [<sender wall ms>]`."""
        if len(argv) > 4:
            return Error("ERR wrong number of arguments for 'gc.swim' command")
        if len(argv) == 4:
            try:
                self._cluster.peer_wall_ms(session.peer_id, int(argv[3]))
            except ValueError:
                return NOT_INTEGER
        self._cluster.on_swim(argv[1].decode("utf-8", "surrogateescape"), argv[2])
        return OK

    def apply(self, session: Session, argv: list[bytes]) -> object:
        """`GC.APPLY key value expires_at_ms version origin [expiry_version expiry_origin]`."""
        try:
            entry = records.from_apply(argv[2:])
        except ValueError:
            return NOT_INTEGER
        try:
            return 1 if self._cluster.store.apply(argv[1], entry) else 0
        except VersionRefused as exc:
            return self._cluster.version_refused(exc, session.peer_id, argv[1], "GC.APPLY")

    def applydel(self, session: Session, argv: list[bytes]) -> object:
        """`GC.APPLYDEL key version origin [expires_at_ms expiry_version expiry_origin]`."""
        try:
            tomb = records.from_applydel(argv[2:])
        except ValueError:
            return NOT_INTEGER
        try:
            return 1 if self._cluster.store.apply(argv[1], tomb) else 0
        except VersionRefused as exc:
            return self._cluster.version_refused(exc, session.peer_id, argv[1], "GC.APPLYDEL")

    def applybatch(self, session: Session, argv: list[bytes]) -> object:
        """`GC.APPLYBATCH` and six fields a record (records.py, as GC.GEO): the number of
        records when each was taken (applied or superseded here), else one reply a
        record (1 applied, 0 not, or the error that refused it)."""
        if (len(argv) - 1) % records.GEO_FIELDS:
            return Error(f"ERR bad GC.APPLYBATCH: not {records.GEO_FIELDS} fields a record")
        cluster = self._cluster
        store = cluster.store
        replies: list[object] = []
        refused = False
        for i in range(1, len(argv), records.GEO_FIELDS):
            try:
                key, record = records.from_geo_fields(argv[i : i + records.GEO_FIELDS])
            except ValueError:
                replies.append(NOT_INTEGER)
                refused = True
                continue
            try:
                replies.append(1 if store.apply(key, record) else 0)
            except VersionRefused as exc:
                replies.append(cluster.version_refused(exc, session.peer_id, key, "GC.APPLYBATCH"))
                refused = True
        return replies if refused else len(replies)

    def fetch(self, session: Session, argv: list[bytes]) -> object:
        """The entry (value first) or tombstone (version first) held for a key, or nil."""
        store = self._cluster.store
        entry = store.peek(argv[1])
        return records.fetch_reply(entry if entry is not None else store.tombstones.get(argv[1]))

    def fwd(self, session: Session, argv: list[bytes]) -> object:
        """Run a command another node forwarded, as its coordinator; reply with its RESP bytes.

        `GC.FWD proto version command...`: a write carries the version the forwarding node
        minted when its client asked (0 for a read), and gets exactly that version here. So
        a forwarded write that arrives late (held in a stalled connection while the client
        was answered through another owner) cannot overwrite the writes and deletes made
        since: if the key already holds that version or a newer one (or holds nothing and
        its resurrection floor, a FLUSHALL's version, is that or newer), it does nothing
        and answers `TRYAGAIN newer version <v>` (the forwarding node then mints a newer
        one).
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
        hlc = cluster.store.hlc
        if version and not hlc.admits(version):
            exc = VersionRefused(version, hlc.ahead_ms(version), hlc.max_ahead_ms)
            cluster.store.versions_refused += 1
            return encode(cluster.version_refused(exc, session.peer_id, key, "GC.FWD"), proto)
        if version and cmd.write:
            # A key not held here counts its resurrection floor (a FLUSHALL's version): a
            # write older than the flush that arrives after it must not come back.
            floor = cluster.store.tombstones.floor
            stamps = [cluster.store.version_of(k) for k in keys]
            newest = max((floor if s is None else max(s[0], s[3]) for s in stamps), default=0)
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

    def flush(self, session: Session, argv: list[bytes]) -> object:
        """`GC.FLUSH version`: another member ran FLUSHALL at `version` (router.py)."""
        try:
            version = parse_int(argv[1])
        except StoreError:
            return NOT_INTEGER
        if version <= 0:
            return Error("ERR flush version must be positive")
        store = self._cluster.store
        hlc = store.hlc
        if not hlc.admits(version):
            # A flush from the far future would drop every write made until then and
            # raise the resurrection floor past them all: refused like any version.
            store.versions_refused += 1
            exc = VersionRefused(version, hlc.ahead_ms(version), hlc.max_ahead_ms)
            return self._cluster.version_refused(exc, session.peer_id, b"", "GC.FLUSH")
        return self._cluster.apply_flush(version)

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

    def evicted(self, session: Session, argv: list[bytes]) -> object:
        """Per bucket, the newest version this node evicted from it (journal.py), in
        GC.DIGEST's wire form: repair drops what an owner evicted a newer version of."""
        return digest.encode_buckets(self._cluster.store.evicted_floor)

    def bucket(self, session: Session, argv: list[bytes]) -> object:
        """Flat key, version, origin, is_tombstone, expiry_version, expiry_origin for
        every record held in one bucket."""
        try:
            bucket = parse_int(argv[1])
        except StoreError:
            return NOT_INTEGER
        if not 0 <= bucket < digest.BUCKETS:
            return Error(f"ERR bucket must be 0..{digest.BUCKETS - 1}")
        return digest.encode_records(self._cluster.store.digest.keys_in_bucket(bucket))

    def warm(self, session: Session, argv: list[bytes]) -> object:
        """`GC.WARM <max bytes> <bucket>...`: the buckets' records, whole (warmup.py)."""
        try:
            max_bytes, *buckets = [parse_int(arg) for arg in argv[1:]]
        except StoreError:
            return NOT_INTEGER
        if not all(0 <= b < digest.BUCKETS for b in buckets):
            return Error(f"ERR bucket must be 0..{digest.BUCKETS - 1}")
        return warmup.serve(self._cluster.store, buckets, max_bytes)

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
        return Deferred(self._cluster.streams.receive(writes, session.peer_id))


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
