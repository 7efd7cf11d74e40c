"""Graceful leave: a leaving node pushes what it holds to the members that take over its
buckets, then exits (SIGTERM, within Kubernetes' terminationGracePeriodSeconds).

Repair pulls (repair.py), but a leaving node cannot tell when the others' pulls end,
and it must be gone within its grace. So it pushes. After announcing LEFT, for every
bucket it holds something in, and every owner of that bucket among the region's other
alive members, it lists the owner's records of the bucket (`GC.BUCKET`) and sends
(`GC.APPLY`, `GC.APPLYDEL`) each record of its own that is newer there or missing. The
receiver's merge rule keeps the newest record, so a key written meanwhile is never
harmed, and an owner that already holds everything costs one listing per bucket.

Two passes: the second catches writes this node took while the first ran (forwarded
to it by members that had not yet heard it leave). All of it within LEAVE_HANDOFF_S;
whatever is left is what repair would have pulled from the other owners anyway (with
`--replicas 2` or more every key has one), so the deadline bounds the exit, not safety.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from geocache.cluster import digest, placement
from geocache.cluster.journal import JournaledStore
from geocache.cluster.peers import PeerError, Peers
from geocache.cluster.records import apply_command
from geocache.store.entry import Entry, Tombstone, newer

# What a member holds of a key, as GC.BUCKET lists it: (version, origin) of the value
# register, then of the expiry register.
Stamp = tuple[int, str, int, str]

log = logging.getLogger("geocache.handoff")

# 10 s: a node holding a million keys lists 1024 buckets per new owner and pushes what
# they lack at tens of thousands of records a second; Kubernetes' default grace is 30 s.
LEAVE_HANDOFF_S = 10.0
# As repair.py: 16 bucket listings per pipeline, 256 records per push.
BUCKETS_PER_CALL = 16
PUSH_BATCH = 256
PASSES = 2
# 2 s per pipeline: a listing of 16 buckets of a million-key node is ~16,000 records; a
# member that takes longer is hung, and its share is left to repair.
HANDOFF_TIMEOUT_MS = 2000


class HandoffView(Protocol):
    """What the handoff needs of its cluster: who takes over, how to reach them, the store."""

    node_id: str
    replicas: int
    store: JournaledStore
    peers: Peers

    def region_peers(self) -> list[str]: ...

    def addr_of(self, node_id: str) -> str | None: ...

    def known_down(self, node_id: str) -> bool: ...


@dataclass(slots=True)
class HandoffStats:
    buckets: int = 0
    pushed: int = 0
    failures: int = 0
    finished: bool = False


def heirs(view: HandoffView, bucket: int) -> list[str]:
    """The bucket's owners once this node is gone: placement over the others."""
    others = sorted(view.region_peers())
    return placement.owners(digest.bucket_token(bucket), others, view.replicas)


def record_of(store: JournaledStore, key: bytes) -> Entry | Tombstone | None:
    entry = store.peek(key)
    return entry if entry is not None else store.tombstones.get(key)


async def hand_off(view: HandoffView, budget_s: float = LEAVE_HANDOFF_S) -> HandoffStats:
    """Push this node's records to its buckets' heirs; at most `budget_s`."""
    stats = HandoffStats()
    if not view.region_peers():
        stats.finished = True  # the last of its region: nobody to hand to
        return stats
    try:
        async with asyncio.timeout(budget_s):
            for _ in range(PASSES):
                await _pass(view, stats)
            stats.finished = True
    except TimeoutError:
        pass
    log.info(
        "handoff",
        extra={"buckets": stats.buckets, "pushed": stats.pushed, "finished": stats.finished},
    )
    return stats


async def _pass(view: HandoffView, stats: HandoffStats) -> None:
    held = [b for b, value in enumerate(view.store.digest.buckets) if value]
    by_heir: dict[str, list[int]] = {}
    for bucket in held:
        for heir in heirs(view, bucket):
            by_heir.setdefault(heir, []).append(bucket)
    stats.buckets = len(held)
    await asyncio.gather(
        *(_to_heir(view, heir, buckets, stats) for heir, buckets in by_heir.items())
    )


async def _to_heir(view: HandoffView, heir: str, buckets: list[int], stats: HandoffStats) -> None:
    addr = view.addr_of(heir)
    if addr is None or view.known_down(heir):
        return  # gone or hung: repair pulls its share from the other owners
    client = view.peers.get(addr)
    try:
        for i in range(0, len(buckets), BUCKETS_PER_CALL):
            batch = buckets[i : i + BUCKETS_PER_CALL]
            listings = await client.pipeline(
                [("GC.BUCKET", b) for b in batch], timeout_ms=HANDOFF_TIMEOUT_MS
            )
            theirs: dict[bytes, Stamp] = {}
            for reply in listings:
                for key, version, origin, _tomb, x_version, x_origin in digest.decode_records(
                    reply
                ):
                    theirs[key] = (version, origin, x_version, x_origin)
            push = _newer_here(view.store, batch, theirs)
            for j in range(0, len(push), PUSH_BATCH):
                await client.pipeline(push[j : j + PUSH_BATCH], timeout_ms=HANDOFF_TIMEOUT_MS)
                stats.pushed += len(push[j : j + PUSH_BATCH])
    except (PeerError, ValueError) as exc:
        stats.failures += 1
        log.warning("handoff to a member failed", extra={"peer": heir, "error": str(exc)})


def _newer_here(
    store: JournaledStore, buckets: list[int], theirs: dict[bytes, Stamp]
) -> list[tuple[bytes | str | int, ...]]:
    """The GC.APPLY / GC.APPLYDEL commands for records with a register newer here than at
    the heir (value or expiry: each is merged on its own)."""
    out = []
    for bucket in buckets:
        for key, version, origin, _tomb, x_version, x_origin in store.digest.keys_in_bucket(bucket):
            there = theirs.get(key)
            if (
                there is None
                or newer(version, origin, there[0], there[1])
                or newer(x_version, x_origin, there[2], there[3])
            ):
                record = record_of(store, key)
                if record is not None:
                    out.append(apply_command(key, record))
    return out
