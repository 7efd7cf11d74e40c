"""Routing in cluster mode: any node answers any command.

- Keyless commands (PING, INFO, KEYS, SCAN, DBSIZE, FLUSHALL...) run on this node only.
- Until the node is ready (joined, warmed up: repair.py, warmup.py), a command on keys
  answers LOADING, as Redis does while it loads its data set: a client moves on to a
  node that holds the keys rather than reading misses here.
- A read of one key runs here if this node owns the key, else at the first owner that
  answers. A miss at an owner asks, in turn: the other members of the region while it
  has just gained keys (start, a membership change); the nearest other region
  (`read_remote_on_miss`); the read-through origin, which only the key's primary
  loads from (others forward the read to it).
- A write of one key is coordinated by the key's primary owner: another node forwards
  it (`GC.FWD`), falling back to the next owner if the primary does not answer. The
  coordinator writes locally, then replicates (cluster.py) and answers after
  `write_acks` owners have applied the write.
- Commands on several keys (MGET, MSET, DEL, EXISTS, UNLINK) are grouped by the node
  that runs each key (its primary for a write; this node for a read it owns), in
  groups of at most MANY_KEYS_PER_GROUP keys and MANY_BYTES_PER_GROUP bytes: one peer
  request per group (`GC.FWD` of the same command naming the group's keys), the local
  groups run here with a yield to the event loop between groups, and the replies are
  combined in key order. A command naming more than `max_keys_per_command` keys is
  refused before any work. Other multi-key commands need keys with the same owners
  (CROSSSLOT otherwise, as Redis Cluster says).
- MULTI/EXEC works when every key of the transaction hashes to one slot, as in Redis
  Cluster (a command with a key of another slot is refused with CROSSSLOT and dooms
  the transaction). Commands queue where the client is; EXEC runs them in one go at
  the slot's primary, here or forwarded there (`GC.EXEC`), and replicates their
  writes as one batch. WATCH needs the keys' primary (a cluster-aware client).

Forwarded replies travel pre-encoded in the client's protocol, so they reach the client
byte for byte as the owner produced them.

The router sees its cluster as a `RouterView`: membership (who owns a key, who is
down, whether this node is warming), the store, and the calls that reach other nodes
(forward, replicate, fetch); `Cluster` satisfies it, and a unit test passes a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from geocache.cluster.host import ClusterHost
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.multikey import Group, combined, gather_values, parse, spread, value_of
from geocache.commands.context import Deferred, Session
from geocache.commands.table import TX_CONTROL, Command, dispatch
from geocache.protocol.types import OK, Error, Raw
from geocache.slots import SLOTS_PER_BUCKET, key_slot

# Forwarded reads get what a replica gets; forwarded writes also wait for replication
# at their coordinator (cluster.py).
PEER_TIMEOUT_MS = 500
FORWARD_TIMEOUT_MS = 2 * PEER_TIMEOUT_MS + 200

Table = dict[bytes, Command]
WATCH_ELSEWHERE = Error(
    "ERR WATCH in cluster mode needs a connection to the keys' primary (a cluster-aware client)"
)
LOADING = Error("LOADING geocache is joining its cluster and warming up")
FLUSHES = frozenset({b"flushdb", b"flushall"})
FLUSH_IN_MULTI = Error("ERR FLUSHALL and FLUSHDB run outside MULTI in cluster mode")
CROSSSLOT = Error("CROSSSLOT Keys in request don't hash to the same slot")
_SUMMED = {b"del", b"unlink", b"exists", b"touch"}
_GROUPED = _SUMMED | {b"mget", b"mset"}
# A multi-key command is run in groups of at most this many keys (and bytes of keys and
# values): one peer request per group, and the event loop gets a turn between local
# groups, so one command of 10,000 keys holds the loop ~1 ms at a time, not ~50 ms.
MANY_KEYS_PER_GROUP = 500
MANY_BYTES_PER_GROUP = 1 << 20
# A command on at most this many keys, all run here, is answered at once (no task).
INLINE_KEYS = 64
NEWER = b"-TRYAGAIN newer version "


class RegionShipping(Protocol):
    """The region streams, as the router uses them (streams.RegionStreams)."""

    def ship(self, writes: list[Write]) -> None: ...

    async def read_remote(self, key: bytes) -> bool: ...


class RouterView(Protocol):
    """What the router sees of its cluster (cluster.Cluster satisfies it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def host(self) -> ClusterHost: ...

    @property
    def store(self) -> JournaledStore: ...

    @property
    def streams(self) -> RegionShipping: ...

    @property
    def ready(self) -> bool: ...

    def owners(self, key: bytes) -> list[str]: ...

    def bucket_owners(self, bucket: int) -> list[str]: ...

    def known_down(self, node_id: str) -> bool: ...

    def warming(self) -> bool: ...

    def replicate(self, writes: list[Write], reply: object) -> object: ...

    async def forward(
        self,
        argv: list[bytes],
        owners: list[str],
        proto: int,
        timeout_ms: int = FORWARD_TIMEOUT_MS,
        version: int = 0,
    ) -> object: ...

    async def fetch_newest(self, key: bytes) -> bool: ...

    async def forward_exec(
        self, commands: list[list[bytes]], owners: list[str], proto: int
    ) -> object: ...

    async def flush_everywhere(self, version: int, reply: object) -> object: ...


class Router:
    def __init__(self, cluster: RouterView) -> None:
        self.cluster = cluster

    def dispatch(self, table: Table, session: Session, argv: list[bytes]) -> object:
        """The node's dispatch in cluster mode (see the module docstring)."""
        cmd = table.get(argv[0]) or table.get(argv[0].lower())
        if session.multi is not None and cmd is not None and session.authenticated:
            return self._in_multi(table, session, argv, cmd)
        if cmd is None or cmd.first_key == 0 or not session.authenticated:
            if cmd is not None and cmd.name == b"multi":
                session.multi_slot = -1
            elif cmd is not None and cmd.name in FLUSHES and session.authenticated:
                return self._flush(table, session, argv)
            return dispatch(table, session, argv)
        arity = cmd.arity
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            return dispatch(table, session, argv)  # the arity error
        if not self.cluster.ready:  # joining, warming up (repair.py), or no seed trusts it
            return LOADING
        keys = cmd.keys(argv)
        if not keys:  # a key-taking command called without one (OBJECT HELP)
            return dispatch(table, session, argv)
        if len(keys) == 1 and cmd.name != b"mget":  # MGET's reply is an array, always
            return self.route(table, session, argv, cmd, keys[0])
        return self._route_many(table, session, argv, cmd, keys)

    def route(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, key: bytes
    ) -> object:
        cluster = self.cluster
        owners = cluster.owners(key)
        me = cluster.node_id
        if cmd.write:
            if owners[0] == me:
                return self.coordinate(table, session, argv, cmd, key)
            return Deferred(self._forward_write(table, session, argv, cmd, key, owners))
        if me in owners:
            return self.coordinate(table, session, argv, cmd, key)
        origin = cluster.host.origin
        if origin is not None and origin.serves(cmd.name):
            # The owner may load the key from the origin first: wait for that, or a slow
            # origin would make this node ask the next owner, which would load it again.
            timeout_ms = origin.timeout_ms + FORWARD_TIMEOUT_MS
        else:
            timeout_ms = PEER_TIMEOUT_MS
        return Deferred(self._forward(argv, owners, session.proto, timeout_ms))

    def coordinate(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        version: int = 0,
    ) -> object:
        """Run here as the key's coordinator: replicate what it wrote, read through on a miss.

        `version`: the version a forwarded write was minted with at the node its client
        asked (GC.FWD), which the write takes here; 0 mints a new one."""
        store = self.cluster.store
        reply, replicated = self.run_here(table, session, argv, version)
        if replicated:
            return reply
        if not cmd.write and store.peek(key) is None and self._fills_misses(cmd):
            return Deferred(self._after_miss(table, session, argv, cmd, key, reply))
        return reply

    def run_here(
        self, table: Table, session: Session, argv: list[bytes], version: int = 0
    ) -> tuple[object, bool]:
        """Run a command on this node's store and replicate what it wrote: the reply (a
        Deferred while replicas acknowledge), and whether it wrote anything."""
        cluster = self.cluster
        store = cluster.store
        store.journal.clear()
        if version:
            store.hlc.pin(version)
            try:
                reply = dispatch(table, session, argv)
            finally:
                store.hlc.pin(0)
        else:
            reply = dispatch(table, session, argv)
        writes = store.take_journal()
        if not writes:
            return reply, False
        cluster.streams.ship(writes)
        return cluster.replicate(writes, reply), True

    def _flush(self, table: Table, session: Session, argv: list[bytes]) -> object:
        """FLUSHDB / FLUSHALL in a cluster: here, then everywhere, at one version.

        The local flush raises this store's resurrection floor to a version minted now;
        every other member of every region gets `GC.FLUSH <version>` and drops what is
        not newer, so nothing older comes back by replication or repair. Members that do
        not answer get it when they are back (`Cluster.flush_everywhere`)."""
        reply = dispatch(table, session, argv)
        if reply is not OK:
            return reply  # a syntax error: nothing was flushed
        version = self.cluster.store.tombstones.floor
        return Deferred(self.cluster.flush_everywhere(version, reply))

    # -- transactions ----------------------------------------------------------------------

    def _in_multi(self, table: Table, session: Session, argv: list[bytes], cmd: Command) -> object:
        """Inside MULTI: queue commands of the transaction's one slot; EXEC runs them."""
        if cmd.name == b"exec":
            return self._exec(table, session)
        if cmd.name in FLUSHES:
            session.multi_dirty = True
            return FLUSH_IN_MULTI
        arity = cmd.arity
        arity_ok = len(argv) == arity if arity > 0 else len(argv) >= -arity
        if cmd.first_key and arity_ok and cmd.name not in TX_CONTROL:
            for key in cmd.keys(argv):
                slot = key_slot(key)
                if session.multi_slot < 0:
                    session.multi_slot = slot
                elif slot != session.multi_slot:
                    session.multi_dirty = True
                    return CROSSSLOT
        return dispatch(table, session, argv)

    def _exec(self, table: Table, session: Session) -> object:
        cluster = self.cluster
        slot = session.multi_slot
        session.multi_slot = -1
        queued = session.multi
        if slot < 0 or session.multi_dirty or queued is None:
            return self.run_here(table, session, [b"EXEC"])[0]
        owners = cluster.bucket_owners(slot // SLOTS_PER_BUCKET)
        if owners[0] == cluster.node_id:
            return self.run_here(table, session, [b"EXEC"])[0]
        session.multi = None
        if session.watched:
            session.watched = {}
            return WATCH_ELSEWHERE
        return Deferred(self._exec_at(queued, owners, session.proto))

    async def _exec_at(self, queued: list[list[bytes]], owners: list[str], proto: int) -> object:
        reply = await self.cluster.forward_exec(queued, owners, proto)
        return Raw(reply) if isinstance(reply, bytes) else reply

    def _fills_misses(self, cmd: Command) -> bool:
        cluster = self.cluster
        host = cluster.host
        return (
            cluster.warming()
            or host.config.read_remote_on_miss
            or (host.origin is not None and host.origin.serves(cmd.name))
        )

    async def _after_miss(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        reply: object,
    ) -> object:
        """A read missed at an owner: ask, in turn, the region's other members (while
        owners may have moved), the nearest other region (read_remote_on_miss), and the
        origin (at the key's primary only); the first that has the key answers."""
        cluster = self.cluster
        host = cluster.host
        if cluster.warming() and await cluster.fetch_newest(key):
            return dispatch(table, session, argv)
        if host.config.read_remote_on_miss and await cluster.streams.read_remote(key):
            return dispatch(table, session, argv)
        origin = host.origin
        if origin is None or not origin.serves(cmd.name):
            return reply
        owners = cluster.owners(key)
        if owners[0] != cluster.node_id and not session.peer_id:
            # Only the primary loads, so concurrent misses on every owner load once.
            budget = origin.timeout_ms + FORWARD_TIMEOUT_MS
            loaded = await cluster.forward(argv, owners[:1], session.proto, budget)
            if isinstance(loaded, bytes):
                return Raw(loaded)
            # The primary did not answer: this owner loads rather than fail the read.
        fill = await origin.fill(key)
        if fill is None or isinstance(fill, Error):
            return reply if fill is None else fill
        if fill.store and cluster.store.peek(key) is None:
            set_argv = [b"SET", key, fill.value]
            if fill.ttl_ms:
                set_argv += [b"PX", b"%d" % fill.ttl_ms]
            written = self.coordinate(table, session, set_argv, table[b"set"], key)
            if isinstance(written, Deferred):
                await written.awaitable
        return fill.value

    async def _forward(
        self, argv: list[bytes], owners: list[str], proto: int, timeout_ms: int = FORWARD_TIMEOUT_MS
    ) -> object:
        reply = await self.cluster.forward(argv, owners, proto, timeout_ms)
        return Raw(reply) if isinstance(reply, bytes) else reply

    async def _forward_write(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        owners: list[str],
    ) -> object:
        cluster = self.cluster
        me = cluster.node_id
        primary, rest = owners[0], owners[1:]
        reply: object = Error("CLUSTERDOWN no owner of the key answered")
        # A primary that just failed or hung is skipped, so one hung node costs one
        # timeout, not one per write, until membership declares it dead.
        if not cluster.known_down(primary) or not rest:
            reply = await self._forward_versioned(argv, primary, session.proto)
            if isinstance(reply, bytes):
                return Raw(reply)
        # The primary did not answer: the next owner coordinates (maybe this node).
        if me in rest:
            result = self.coordinate(table, session, argv, cmd, key)
            return await result.awaitable if isinstance(result, Deferred) else result
        for owner in (o for o in rest if o != me):
            reply = await self._forward_versioned(argv, owner, session.proto)
            if isinstance(reply, bytes):
                return Raw(reply)
        return reply

    async def _forward_versioned(self, argv: list[bytes], owner: str, proto: int) -> object:
        """Forward a write with a version minted now (see GC.FWD): if it arrives late,
        it loses to every write made since. An owner that holds a newer version than
        this node's clock gave (clocks differ) says so, and the write goes again above it."""
        cluster = self.cluster
        hlc = cluster.store.hlc
        reply = await cluster.forward(argv, [owner], proto, version=hlc.now())
        if isinstance(reply, bytes) and reply.startswith(NEWER):
            hlc.update(int(reply[len(NEWER) :].strip()))
            reply = await cluster.forward(argv, [owner], proto, version=hlc.now())
        return reply

    # -- several keys --------------------------------------------------------------------------

    def _route_many(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, keys: list[bytes]
    ) -> object:
        limit = self.cluster.host.config.max_keys_per_command
        if limit and len(keys) > limit:
            return Error(
                f"ERR too many keys in one command ({len(keys)}; max-keys-per-command is {limit})"
            )
        name = cmd.name
        if name in _GROUPED and (name != b"mset" or len(argv) % 2 == 1):
            if len(keys) > INLINE_KEYS:
                return Deferred(self._plan_and_run(table, session, argv, cmd, keys))
            groups = self._groups(session, argv, cmd, keys)
            me = self.cluster.node_id
            if all(g.owner == me for g in groups):
                now = self._local_now(table, session, cmd, groups)
                if now is not None:
                    return now
            return Deferred(self._run_groups(table, session, cmd, groups, len(keys)))
        cluster = self.cluster
        first = cluster.owners(keys[0])
        if any(cluster.owners(k) != first for k in keys[1:]):
            return CROSSSLOT
        return self.route(table, session, argv, cmd, keys[0])

    async def _plan_and_run(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, keys: list[bytes]
    ) -> object:
        """A large command: find each key's node a slice at a time, yielding between
        slices (placement costs microseconds a key), then run the groups."""
        by_owner: dict[str, list[int]] = {}
        for start in range(0, len(keys), MANY_KEYS_PER_GROUP):
            self._place(session, cmd, keys, range(start, start + MANY_KEYS_PER_GROUP), by_owner)
            await asyncio.sleep(0)
        groups = self._cut(argv, cmd, keys, by_owner)
        return await self._run_groups(table, session, cmd, groups, len(keys))

    def _place(
        self,
        session: Session,
        cmd: Command,
        keys: list[bytes],
        positions: range,
        by_owner: dict[str, list[int]],
    ) -> None:
        """File the keys at `positions` under the node that runs them."""
        cluster = self.cluster
        me = cluster.node_id
        for i in positions[: max(0, len(keys) - positions.start)]:
            if session.peer_id:  # forwarded here as one group: run it here
                owner = me
            else:
                owners = cluster.owners(keys[i])
                owner = owners[0] if cmd.write or me not in owners else me
            by_owner.setdefault(owner, []).append(i)

    def _groups(
        self, session: Session, argv: list[bytes], cmd: Command, keys: list[bytes]
    ) -> list[Group]:
        """The keys by the node that runs them, cut to MANY_*_PER_GROUP."""
        by_owner: dict[str, list[int]] = {}
        self._place(session, cmd, keys, range(len(keys)), by_owner)
        return self._cut(argv, cmd, keys, by_owner)

    def _cut(
        self, argv: list[bytes], cmd: Command, keys: list[bytes], by_owner: dict[str, list[int]]
    ) -> list[Group]:
        """Each node's keys cut into groups of at most MANY_*_PER_GROUP."""
        pairs = cmd.name == b"mset"
        groups: list[Group] = []
        for owner, positions in by_owner.items():
            sub: list[bytes] = [argv[0]]
            size = 0
            start = 0
            for n, i in enumerate(positions):
                args = argv[1 + 2 * i : 3 + 2 * i] if pairs else [keys[i]]
                weight = sum(len(a) for a in args)
                if n > start and (
                    n - start >= MANY_KEYS_PER_GROUP or size + weight > MANY_BYTES_PER_GROUP
                ):
                    groups.append(Group(owner, positions[start:n], sub))
                    sub, size, start = [argv[0]], 0, n
                sub += args
                size += weight
            groups.append(Group(owner, positions[start:], sub))
        return groups

    def _local_now(
        self, table: Table, session: Session, cmd: Command, groups: list[Group]
    ) -> object | None:
        """A small command run here: its reply now, or None if any part must wait."""
        results: list[object] = []
        for group in groups:
            part = self._local_group(table, session, cmd, group)
            if not isinstance(part, list):
                return None
            results += part
        positions = [i for g in groups for i in g.positions]
        ordered: list[object] = [None] * len(positions)
        for i, value in zip(positions, results, strict=True):
            ordered[i] = value
        return combined(cmd.name, ordered)

    def _local_group(
        self, table: Table, session: Session, cmd: Command, group: Group
    ) -> list[object] | Awaitable[list[object]]:
        """One group run here: one result per key (a list now, or an awaitable)."""
        n = len(group.positions)
        if cmd.write:
            reply, _wrote = self.run_here(table, session, group.argv)
            return spread(cmd.name, reply, n)
        if self.cluster.ready and not self._fills_misses(cmd):
            return spread(cmd.name, dispatch(table, session, group.argv), n)
        # Warming up, or misses fill from elsewhere: each key as its own read.
        single = b"GET" if cmd.name == b"mget" else group.argv[0]
        sub_cmd = table[single.lower()]
        parts = [self.route(table, session, [single, key], sub_cmd, key) for key in group.argv[1:]]
        if not any(isinstance(p, Deferred) for p in parts):
            return [value_of(p) for p in parts]
        return gather_values(parts)

    async def _run_groups(
        self, table: Table, session: Session, cmd: Command, groups: list[Group], n: int
    ) -> object:
        me = self.cluster.node_id
        results: list[object] = [None] * n
        remote = [
            (g, asyncio.ensure_future(self._remote_group(table, session, cmd, g)))
            for g in groups
            if g.owner != me
        ]
        for group in groups:
            if group.owner != me:
                continue
            part = self._local_group(table, session, cmd, group)
            values = part if isinstance(part, list) else await part
            for i, value in zip(group.positions, values, strict=True):
                results[i] = value
            await asyncio.sleep(0)  # other clients get a turn between groups
        for group, task in remote:
            for i, value in zip(group.positions, await task, strict=True):
                results[i] = value
        return combined(cmd.name, results)

    async def _remote_group(
        self, table: Table, session: Session, cmd: Command, group: Group
    ) -> list[object]:
        """One group at its owner (one GC.FWD); if it does not answer, each key goes its
        own way, to the next owner as a one-key command would."""
        n = len(group.positions)
        if cmd.write:
            reply = await self._forward_versioned(group.argv, group.owner, 2)
        else:
            reply = await self.cluster.forward(group.argv, [group.owner], 2, PEER_TIMEOUT_MS)
        if isinstance(reply, bytes):
            value = parse(reply)
            if not isinstance(value, Error) or not value.startswith("CLUSTERDOWN"):
                return spread(cmd.name, value, n)
        single = b"GET" if cmd.name == b"mget" else group.argv[0]
        sub_cmd = table[single.lower()]
        if cmd.name == b"mset":
            args = group.argv[1:]
            argvs = [[b"SET", args[j], args[j + 1]] for j in range(0, len(args), 2)]
        else:
            argvs = [[single, key] for key in group.argv[1:]]
        parts = [self.route(table, session, a, sub_cmd, a[1]) for a in argvs]
        return await gather_values(parts)
