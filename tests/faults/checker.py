"""The checker: what must hold once faults healed and the cluster settled. No I/O.

It reads a `History` (history.py) and a `Snapshot` of every node (observe.py) and
returns violations, each naming its key, nodes and what was seen:

1. Convergence (`diverged`, `owners-disagree`): for every key, its owners in all
   regions hold the same record (version, origin; tombstones included), apart from a
   node that holds nothing for the key (an eviction: see `missing` below). Keys written
   with a TTL are compared on their live entries only: an expired write may be dropped
   by one replica on arrival and reclaimed into a tombstone by another.
2. Acknowledged writes (`lost-write`, `unknown-value`): each acknowledged SET is
   present at the owners, or superseded by a write or delete that may have come after
   it, or expired, or evicted. "May have come after": the other operation did not
   certainly complete before this one began (an operation with an unknown outcome may
   take effect at any time, history.py).
3. Reads after settling (`read-after-delete`, `stale-read`, `read-expired`,
   `read-error`, `value-undone-by-expiry`): a GET through any node never returns a
   value whose write certainly completed before an acknowledged DEL of the key began
   (the deleted value is back),
   nor one certainly superseded by an acknowledged SET, nor one certainly expired; and
   it does not fail. An acknowledged FLUSHALL is an acknowledged delete of every key
   at its time (`read-after-flush` for a value it certainly followed); one whose
   outcome is unknown may or may not have happened, so it explains an absence but
   condemns nothing. An acknowledged SET followed only by expiry writes (EXPIRE,
   PERSIST...: no other SET or DEL may have come after it) is read as its value until
   it or a later expiry write may have run out: a read of an older value, or of
   nothing, is `value-undone-by-expiry` (an expiry write replicated with the stale
   value it saw, winning by version: issue 21).

Nodes that left the cluster (`Rules.departed`, a graceful leave) are not in the
snapshot: their records went with them. No node may still name one as an owner
(`departed-owner`); the keys they held must be at the remaining owners like any other.

`missing`: every key a node lacks while the other owners hold it, and every
acknowledged write that no owner holds live and nothing else explains (an eviction on
every owner may leave nothing, or an older tombstone that repair pulled back from a
former owner), is charged to the owners' room losses (evicted keys, plus keys repair
did not copy for want of room, over all of a node's processes). More charged keys
than room losses is a violation.

Clock skew: a TTL runs out by the clocks of the coordinator (which sets the expiry)
and the node that reads, so "possibly expired" and "certainly expired" are judged
with the spread of the nodes' clock offsets, plus a slack for the time the snapshot
takes. And versions are last-writer-wins by hybrid logical clock, so two writes less
than that spread apart may end in either order: "certainly before" means before by
more than the spread (`Rules.margin_s`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from geocache.clock import version_ms

from .history import ALL_KEYS, EXPIRE, FLUSH, SET, Op
from .observe import Record, Snapshot

# A snapshot takes a moment (a few hundred ms on a loaded machine) after taken_wall_ms.
SLACK_MS = 1_000


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    key: str
    detail: str
    nodes: tuple[str, ...] = ()
    ops: tuple[int, ...] = ()  # ids of the operations it implicates, in the history

    def __str__(self) -> str:
        where = f" at {','.join(self.nodes)}" if self.nodes else ""
        return f"{self.kind} {self.key}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Rules:
    """What the checker needs to know beside the history and the snapshot."""

    is_ttl_key: Callable[[str], bool]
    # max - min of the clock offsets nodes ran with during the run (ms).
    skew_span_ms: int = 0
    slack_ms: int = SLACK_MS
    # Nodes that left the cluster gracefully during the run (not in the snapshot).
    departed: frozenset[str] = frozenset()

    @property
    def tolerance_ms(self) -> int:
        return self.skew_span_ms + self.slack_ms

    @property
    def margin_s(self) -> float:
        """How far apart two operations must be for the later to win for certain.

        Versions are last-writer-wins by hybrid logical clock: a node whose clock runs
        ahead by S mints versions S ahead, so a write made elsewhere up to S after it
        (before that node's versions reached the writer) loses to it. The README says so
        ("Clocks"); the checker holds writes closer than the skew to be concurrent."""
        return self.skew_span_ms / 1000


@dataclass
class _Charges:
    """Keys charged to each node's room losses."""

    by_node: dict[str, set[str]] = field(default_factory=dict)

    def charge(self, node: str, key: str) -> None:
        self.by_node.setdefault(node, set()).add(key)


def check(ops: list[Op], snap: Snapshot, rules: Rules) -> list[Violation]:
    """Every violation of the module docstring's properties; [] when all hold."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op.key != ALL_KEYS:
            by_key.setdefault(op.key, []).append(op)
    writes_by_value = {op.value: op for op in ops if op.kind == SET and op.value is not None}
    keys = sorted(set(by_key).union(*(v.records for v in snap.views.values())))
    # A flush is an operation on every key: each key's ops include them, in time order.
    flushes = [op for op in ops if op.kind == FLUSH]
    for key in keys:
        by_key[key] = sorted(by_key.get(key, []) + flushes, key=lambda o: (o.start_s, o.op_id))
    charges = _Charges()
    out: list[Violation] = []
    for key in keys:
        owners = _owners(snap, key, rules, out)
        records = {o: snap.views[o].records.get(key) for o in owners if o in snap.views}
        out += _convergence(key, records, snap, rules, charges)
        out += _acked_writes(
            key, records, by_key.get(key, []), writes_by_value, snap, rules, charges
        )
    out += _reads(snap, by_key, writes_by_value, rules)
    out += _undone_by_expiry(snap, by_key, rules)
    out += _room(snap, charges)
    return out


# -- 1. convergence --------------------------------------------------------------------------


def _owners(snap: Snapshot, key: str, rules: Rules, out: list[Violation]) -> list[str]:
    """The key's owners in every region; every node of a region must name the same ones,
    and none that left the cluster."""
    owners: list[str] = []
    for region in sorted({v.region for v in snap.views.values()}):
        said = {v.node_id: v.owners.get(key, ()) for v in snap.views.values() if v.region == region}
        if len(set(said.values())) > 1:
            out.append(Violation("owners-disagree", key, f"region {region}: {said}"))
        owners += next(iter(said.values()))
    gone = sorted(set(owners) & rules.departed)
    if gone:
        detail = f"{gone} left the cluster, but owners named are {owners}"
        out.append(Violation("departed-owner", key, detail, tuple(gone)))
    return owners


def _dead(record: Record, snap: Snapshot, rules: Rules) -> bool:
    """A tombstone, or an entry whose TTL ran out or may have (by any node's clock)."""
    if record.dead:
        return True
    return bool(record.expires_at_ms) and (
        record.expires_at_ms - rules.tolerance_ms <= snap.taken_wall_ms
    )


def _convergence(
    key: str,
    records: dict[str, Record | None],
    snap: Snapshot,
    rules: Rules,
    charges: _Charges,
) -> list[Violation]:
    held = {o: r for o, r in records.items() if r is not None}
    if rules.is_ttl_key(key):
        held = {o: r for o, r in held.items() if not _dead(r, snap, rules)}
        lacking = [o for o, r in records.items() if o not in held]
        if not held:
            return []  # expired or deleted everywhere: nothing live to agree on
        # A node holding an older record, or a tombstone, lacks the live entry without
        # an eviction to account for it; only a node holding nothing may have evicted it.
        diverged = [o for o in lacking if records[o] is not None]
    else:
        lacking = [o for o, r in records.items() if r is None]
        diverged = []
    for o in lacking:
        if records[o] is None and held:
            charges.charge(o, key)
    if len({r.ident for r in held.values()}) > 1 or diverged:
        seen = {o: _show(r) for o, r in records.items()}
        return [Violation("diverged", key, f"owners hold {seen}", tuple(sorted(records)))]
    return []


def _minted(record: Record, op: Op, whose: str = "its") -> str:
    """When the record's version was minted, against when `op` began: a version minted
    long after the client had its answer says a request ran late (by the minting clock)."""
    lag_s = (version_ms(record.version) - op.start_wall_ms) / 1000
    return f"{whose} version was minted {lag_s:+.1f}s after #{op.op_id} began (minting clock)"


def _show(record: Record | None) -> str:
    if record is None:
        return "nothing"
    kind = "tombstone" if record.tombstone else "expired entry" if record.expired else record.value
    ttl = f" exp={record.expires_at_ms}" if record.expires_at_ms else ""
    return f"{kind} v={record.version}/{record.origin}{ttl}"


# -- 2. acknowledged writes -------------------------------------------------------------------


def _newest(records: dict[str, Record | None]) -> Record | None:
    held = [r for r in records.values() if r is not None]
    return max(held, key=lambda r: r.ident) if held else None


def _possibly_expired(op: Op, snap: Snapshot, rules: Rules) -> bool:
    """Whether a SET's TTL may have run out by the snapshot (by any node's clock)."""
    return (
        bool(op.ttl_ms) and op.start_wall_ms + op.ttl_ms - rules.tolerance_ms <= snap.taken_wall_ms
    )


def _certainly_expired(op: Op, now_ms: int, rules: Rules) -> bool:
    end_wall_ms = op.start_wall_ms + (op.end_s - op.start_s) * 1000
    return bool(op.ttl_ms) and op.acked and end_wall_ms + op.ttl_ms + rules.tolerance_ms < now_ms


def _acked_writes(
    key: str,
    records: dict[str, Record | None],
    ops: list[Op],
    writes_by_value: dict[str, Op],
    snap: Snapshot,
    rules: Rules,
    charges: _Charges,
) -> list[Violation]:
    final = _newest(records)
    acked = [op for op in ops if op.is_write and op.acked]
    if final is not None and final.value is not None:  # a live entry, or an expired one
        return _final_value(key, final, acked, writes_by_value, tuple(sorted(records)), rules)
    possible = [op for op in ops if (op.is_write or op.kind == EXPIRE) and op.may_have_happened]
    # Evicted everywhere: nothing held, or (on nodes that evict) an older tombstone, which
    # repair pulls back from a former owner once the entry that replaced it is evicted.
    evictable = final is None or any(snap.room_losses(o) for o in records if o in snap.views)
    lost = []
    for w in (op for op in acked if op.kind == SET):
        if _explained_absence(w, possible, snap, rules):
            continue
        if evictable:
            for owner in records:
                charges.charge(owner, key)
            continue
        lost.append(w)
    if not lost or final is None:
        return []
    last = lost[-1]
    detail = (
        f"{len(lost)} acknowledged write(s) gone, last {last.describe()}; owners hold "
        f"{_show(final)} and no delete or expiry may have followed it; "
        f"{_minted(final, last, 'that record')}"
    )
    ids = tuple(w.op_id for w in lost)
    return [Violation("lost-write", key, detail, tuple(sorted(records)), ids)]


def _explained_absence(w: Op, possible: list[Op], snap: Snapshot, rules: Rules) -> bool:
    """A delete may have come after w, or w (or a write after it) may have expired."""
    if _possibly_expired(w, snap, rules):
        return True
    for o in possible:
        if o is w or o.precedes(w, rules.margin_s):
            continue
        if o.deletes or _possibly_expired(o, snap, rules):
            return True
    return False


def _final_value(
    key: str,
    final: Record,
    acked: list[Op],
    writes_by_value: dict[str, Op],
    owners: tuple[str, ...],
    rules: Rules,
) -> list[Violation]:
    f = writes_by_value.get(final.value or "")
    if f is None or f.key != key:
        return [
            Violation("unknown-value", key, f"owners hold {_show(final)}, never written", owners)
        ]
    later = [o for o in acked if o is not f and f.precedes(o, rules.margin_s)]
    if not later:
        return []
    detail = (
        f"owners hold {_show(final)} from {f.describe()}, but {len(later)} acknowledged "
        f"write(s)/delete(s)/flush(es) began after it completed, last {later[-1].describe()}; "
        f"{_minted(final, f)}"
    )
    return [Violation("lost-write", key, detail, owners, (f.op_id, later[-1].op_id))]


# -- 3. reads after settling -------------------------------------------------------------------


def _reads(
    snap: Snapshot, by_key: dict[str, list[Op]], writes_by_value: dict[str, Op], rules: Rules
) -> list[Violation]:
    out = []
    for view in snap.views.values():
        for key, error in sorted(view.read_errors.items()):
            out.append(Violation("read-error", key, f"GET failed: {error}", (view.node_id,)))
        for key, value in sorted(view.reads.items()):
            if value is not None:
                v = _read(key, value, by_key.get(key, []), writes_by_value, snap, rules)
                out += [Violation(k, key, d, (view.node_id,), ops) for k, d, ops in v]
    return out


def _read(
    key: str,
    value: str,
    ops: list[Op],
    writes_by_value: dict[str, Op],
    snap: Snapshot,
    rules: Rules,
) -> list[tuple[str, str, tuple[int, ...]]]:
    """(kind, detail, implicated op ids) of what is wrong with one read."""
    f = writes_by_value.get(value)
    if f is None or f.key != key:
        return [("unknown-value", f"GET returned {value!r}, never written", ())]
    read = f"GET returned {value} of {f.describe()}"
    later = [
        o for o in ops if o.acked and o.is_write and o is not f and f.precedes(o, rules.margin_s)
    ]
    dels = [o for o in later if o.deletes]
    if dels:
        d = dels[-1]
        kind = "read-after-flush" if d.kind == FLUSH else "read-after-delete"
        return [(kind, f"{read}, deleted by {d.describe()}", (f.op_id, d.op_id))]
    if later:
        w = later[-1]
        return [("stale-read", f"{read}, overwritten by {w.describe()}", (f.op_id, w.op_id))]
    if _certainly_expired(f, snap.taken_wall_ms, rules):
        return [("read-expired", f"{read}, expired", (f.op_id,))]
    return []


def _undone_by_expiry(snap: Snapshot, by_key: dict[str, list[Op]], rules: Rules) -> list[Violation]:
    """Reads that miss the value of an acknowledged SET only expiry writes followed."""
    out = []
    for key, ops in sorted(by_key.items()):
        w = _last_value_write(ops, rules)
        if w is None:
            continue
        expiries = [o for o in ops if o.kind == EXPIRE and o.may_have_happened]
        after = [o for o in expiries if not o.precedes(w, rules.margin_s)]
        if not after or _may_have_run_out(w, after, snap, rules):
            continue
        for view in snap.views.values():
            got = view.reads.get(key, w.value)
            if got != w.value and key not in view.read_errors:
                detail = (
                    f"GET returned {got!r}, but {w.describe()} was followed only by expiry "
                    f"writes, the last {after[-1].describe()}"
                )
                ids = (w.op_id, after[-1].op_id)
                out.append(Violation("value-undone-by-expiry", key, detail, (view.node_id,), ids))
    return out


def _last_value_write(ops: list[Op], rules: Rules) -> Op | None:
    """The acknowledged SET that every other SET and DEL of the key certainly preceded."""
    writes = [o for o in ops if o.is_write and o.may_have_happened]
    margin_s = rules.margin_s
    for w in writes:
        if w.kind == SET and w.acked and all(o is w or o.precedes(w, margin_s) for o in writes):
            return w
    return None


def _may_have_run_out(w: Op, expiries: list[Op], snap: Snapshot, rules: Rules) -> bool:
    """The SET's own TTL, or the TTL any expiry write may have set, may have passed."""
    if _possibly_expired(w, snap, rules):
        return True
    return any(o.ttl_ms and _possibly_expired(o, snap, rules) for o in expiries)


# -- eviction accounting -------------------------------------------------------------------------


def _room(snap: Snapshot, charges: _Charges) -> list[Violation]:
    out = []
    for node, keys in sorted(charges.by_node.items()):
        if node not in snap.views:
            continue
        room = snap.room_losses(node)
        if len(keys) > room:
            shown = sorted(keys)[:8]
            detail = (
                f"holds nothing for {len(keys)} key(s) its other owners hold or that were "
                f"acknowledged, e.g. {shown}; its eviction counters account for {room}"
            )
            out.append(Violation("missing", shown[0], detail, (node,)))
    return out
