"""The checker on histories and snapshots made by hand: it passes what is fine and
names each kind of violation. No processes, no namespaces.

A Hypothesis property closes the loop: for any sequence of one key's writes, one after
another, the final state the last of them leaves passes, and putting any earlier
acknowledged write back as the final state is caught.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from .checker import Rules, Violation, check
from .history import ALL_KEYS, DEL, EXPIRE, FAIL, FLUSH, GET, INFO, OK, SET, Op
from .observe import NodeView, Record, Snapshot
from .workload import is_ttl_key

NOW_MS = 1_000_000
RULES = Rules(is_ttl_key)
_ids = iter(range(1, 1_000_000))


def op(kind: str, key: str, value: str | None, start: float, end: float, **kw: object) -> Op:
    fields: dict[str, object] = dict(
        op_id=next(_ids),
        client=0,
        kind=kind,
        key=key,
        value=value,
        ttl_ms=0,
        node="n1",
        start_s=start,
        end_s=end,
        start_wall_ms=NOW_MS - 60_000 + int(start * 1000),
        outcome=OK,
    )
    fields.update(kw)
    return Op(**fields)  # type: ignore[arg-type]


def live(value: str, version: int, expires_at_ms: int = 0, origin: str = "n1") -> Record:
    return Record(version, origin, False, value, expires_at_ms)


def tomb(version: int, origin: str = "n1") -> Record:
    return Record(version, origin, True)


def view(node: str, records: dict[str, Record], **kw: object) -> NodeView:
    keys = set(records) | {"k1", "k2", "t1"}
    fields: dict[str, object] = dict(
        node_id=node,
        region="r1",
        records=records,
        owners={k: ("n1", "n2") for k in keys},
        reads={k: (r.value if r.value and not r.tombstone else None) for k, r in records.items()},
        read_errors={},
        evicted_keys=0,
        skipped_full=0,
    )
    fields.update(kw)
    return NodeView(**fields)  # type: ignore[arg-type]


def snap(*views: NodeView, evicted_before: dict[str, int] | None = None) -> Snapshot:
    return Snapshot(NOW_MS, {v.node_id: v for v in views}, evicted_before or {})


def same(records: dict[str, Record]) -> Snapshot:
    """Both owners of every key hold `records`."""
    return snap(view("n1", records), view("n2", records))


def kinds(violations: list[Violation]) -> list[str]:
    return sorted({v.kind for v in violations})


# -- what passes -------------------------------------------------------------------------------


def test_agreeing_owners_holding_the_last_write_pass() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(SET, "k1", "b", 2, 3), op(GET, "k1", "b", 4, 5)]
    assert check(ops, same({"k1": live("b", 20)}), RULES) == []


def test_a_late_unknown_write_may_win_and_a_failed_one_never_happened() -> None:
    late = op(SET, "k1", "late", 0, 1, outcome=INFO)  # timed out: may apply any time later
    ops = [late, op(SET, "k1", "b", 2, 3), op(SET, "k1", "never", 4, 5, outcome=FAIL)]
    assert check(ops, same({"k1": live("late", 30)}), RULES) == []


def test_a_delete_explains_an_absent_key_and_concurrent_ones_may_go_either_way() -> None:
    ops = [op(SET, "k1", "a", 0, 2), op(DEL, "k1", None, 1, 3)]  # overlapping
    assert check(ops, same({"k1": tomb(30)}), RULES) == []
    assert check(ops, same({"k1": live("a", 20)}), RULES) == []


def test_an_expired_ttl_key_may_be_gone_or_held_dead_anywhere() -> None:
    w = op(SET, "t1", "a", 0, 1, ttl_ms=1_000)  # began 60 s before the snapshot
    records = snap(view("n1", {"t1": tomb(20)}), view("n2", {}))
    assert check([w], records, RULES) == []


def test_an_entry_that_expired_while_being_read_counts_as_its_tombstone() -> None:
    w = op(SET, "t1", "a", 0, 1, ttl_ms=1_000)
    expiring = Record(20, "n1", False, expired=True)  # listed, then gone when fetched
    assert check([w], snap(view("n1", {"t1": expiring}), view("n2", {"t1": tomb(20)})), RULES) == []


def test_with_skewed_clocks_writes_closer_than_the_skew_may_end_in_either_order() -> None:
    """A node 4 s ahead mints versions 4 s ahead: a write made elsewhere 1 s after one
    it coordinated loses (README, "Clocks"). Beyond the skew, the later write must win."""
    first, second = op(SET, "k1", "ahead", 0, 1), op(SET, "k1", "later", 2, 3)
    kept_first = same({"k1": live("ahead", 50)})
    skewed = Rules(is_ttl_key, skew_span_ms=4_000)
    assert check([first, second], kept_first, skewed) == []
    assert kinds(check([first, second], kept_first, RULES)) == ["lost-write", "stale-read"]
    far_later = op(SET, "k1", "much later", 6, 7)
    assert "lost-write" in kinds(check([first, far_later], kept_first, skewed))


def test_a_key_an_owner_evicted_is_accounted_by_its_counters() -> None:
    ops = [op(SET, "k1", "a", 0, 1)]
    evicted = snap(view("n1", {"k1": live("a", 20)}), view("n2", {}, evicted_keys=1))
    assert check(ops, evicted, RULES) == []
    # A previous process of n2 evicted it before it was killed: still accounted.
    earlier = snap(view("n1", {"k1": live("a", 20)}), view("n2", {}), evicted_before={"n2": 1})
    assert check(ops, earlier, RULES) == []


# -- what is caught ----------------------------------------------------------------------------


def test_owners_holding_different_versions_diverged() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(SET, "k1", "b", 2, 3)]
    found = check(
        ops, snap(view("n1", {"k1": live("b", 20)}), view("n2", {"k1": live("a", 10)})), RULES
    )
    assert kinds(found) == ["diverged", "stale-read"]  # n2 serves the older value
    assert found[0].key == "k1" and found[0].nodes == ("n1", "n2")


def test_an_owner_missing_a_key_without_evictions_is_caught() -> None:
    ops = [op(SET, "k1", "a", 0, 1)]
    found = check(ops, snap(view("n1", {"k1": live("a", 20)}), view("n2", {})), RULES)
    assert kinds(found) == ["missing"] and found[0].nodes == ("n2",)


def test_more_missing_keys_than_evictions_is_caught() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(SET, "k2", "b", 0, 1)]
    full = {"k1": live("a", 20), "k2": live("b", 20)}
    found = check(ops, snap(view("n1", full), view("n2", {}, evicted_keys=1)), RULES)
    assert kinds(found) == ["missing"]
    assert "2 key(s)" in found[0].detail


def test_a_write_overwritten_by_an_older_one_is_a_lost_write_and_a_stale_read() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(SET, "k1", "b", 2, 3)]
    found = check(ops, same({"k1": live("a", 99)}), RULES)
    assert kinds(found) == ["lost-write", "stale-read"]
    assert "#" in found[0].detail and "minted" in found[0].detail


def test_a_deleted_value_coming_back_is_caught() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(DEL, "k1", None, 2, 3)]
    found = check(ops, same({"k1": live("a", 99)}), RULES)
    assert kinds(found) == ["lost-write", "read-after-delete"]


def test_an_acknowledged_write_under_an_older_delete_is_lost() -> None:
    ops = [op(DEL, "k1", None, 0, 1), op(SET, "k1", "a", 2, 3)]
    found = check(ops, same({"k1": tomb(99)}), RULES)
    assert kinds(found) == ["lost-write"]


def test_an_acknowledged_write_nobody_holds_is_charged_as_an_eviction() -> None:
    ops = [op(SET, "k1", "a", 0, 1)]
    assert kinds(check(ops, same({}), RULES)) == ["missing"]
    evicted = snap(view("n1", {}, evicted_keys=1), view("n2", {}, evicted_keys=1))
    assert check(ops, evicted, RULES) == []


def test_an_older_tombstone_after_evictions_is_charged_as_an_eviction() -> None:
    ops = [op(DEL, "k1", None, 0, 1), op(SET, "k1", "a", 2, 3)]
    evicted = snap(view("n1", {"k1": tomb(9)}, evicted_keys=5), view("n2", {"k1": tomb(9)}))
    found = check(ops, evicted, RULES)
    assert kinds(found) == ["missing"] and found[0].nodes == ("n2",)  # n2 evicted nothing
    both = snap(
        view("n1", {"k1": tomb(9)}, evicted_keys=5), view("n2", {"k1": tomb(9)}, evicted_keys=1)
    )
    assert check(ops, both, RULES) == []


def test_a_ttl_write_not_yet_expired_must_be_there() -> None:
    w = op(SET, "t1", "a", 59, 60, ttl_ms=600_000)
    assert kinds(check([w], same({"t1": tomb(10)}), RULES)) == ["lost-write"]


def test_a_live_ttl_entry_beside_a_newer_dead_one_diverged() -> None:
    ops = [op(SET, "t1", "a", 0, 1, ttl_ms=600_000), op(SET, "t1", "b", 2, 3, ttl_ms=1_000)]
    found = check(
        ops,
        snap(view("n1", {"t1": live("a", 10, NOW_MS + 500_000)}), view("n2", {"t1": tomb(20)})),
        RULES,
    )
    assert "diverged" in kinds(found) and "stale-read" in kinds(found)


def test_reads_of_expired_unknown_or_failing_values_are_caught() -> None:
    w = op(SET, "t1", "a", 0, 1, ttl_ms=1_000)
    held = {"t1": live("a", 10, NOW_MS + 100_000)}  # a wrong expiry, so it is still served
    reads = {"t1": "a"}
    found = check([w], snap(view("n1", held, reads=reads), view("n2", held, reads=reads)), RULES)
    assert "read-expired" in kinds(found)
    odd = snap(
        view("n1", {}, reads={"k1": "zzz"}), view("n2", {}, read_errors={"k1": "CLUSTERDOWN x"})
    )
    assert kinds(check([], odd, RULES)) == ["read-error", "unknown-value"]


def test_owners_named_differently_by_two_nodes_of_a_region_are_caught() -> None:
    ops = [op(SET, "k1", "a", 0, 1)]
    n2 = view("n2", {"k1": live("a", 20)}, owners={"k1": ("n2", "n1"), "t1": ("n1", "n2")})
    found = check(ops, snap(view("n1", {"k1": live("a", 20)}), n2), RULES)
    assert kinds(found) == ["owners-disagree"]


def test_regions_are_compared_with_each_other() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(SET, "k1", "b", 2, 3)]
    eu = [view(n, {"k1": live("b", 20)}) for n in ("n1", "n2")]
    us = [
        replace(view(n, {"k1": live("a", 10)}), region="us", owners={"k1": ("u1", "u2")})
        for n in ("u1", "u2")
    ]
    found = check(ops, snap(*eu, *us), RULES)
    assert "diverged" in kinds(found)
    assert {"u1", "n1"} <= set(next(v for v in found if v.kind == "diverged").nodes)


def test_a_set_followed_only_by_expiry_writes_must_be_read_until_it_expires() -> None:
    """Issue 21: an EXPIRE made where the newer SET had not arrived, replicated with the
    stale value it saw, must not bring that value back."""
    ops = [
        op(SET, "k1", "v1", 0, 1),
        op(SET, "k1", "v2", 2, 3),
        op(EXPIRE, "k1", None, 3.01, 3.02, ttl_ms=1_000_000, node="n2"),
        op(EXPIRE, "k1", None, 3.03, 3.04, node="n2"),  # PERSIST: no TTL
    ]
    kept = same({"k1": live("v2", 20, NOW_MS + 900_000)})
    assert check(ops, kept, RULES) == []
    undone = same({"k1": live("v1", 30, NOW_MS + 900_000)})
    found = check(ops, undone, RULES)
    assert "value-undone-by-expiry" in kinds(found)
    assert found[-1].ops[0] == ops[1].op_id and "followed only by expiry" in str(found[-1])
    # Gone altogether: undone as well, while no TTL set may have run out...
    gone = snap(view("n1", {"k1": tomb(30)}), view("n2", {"k1": tomb(30)}))
    assert "value-undone-by-expiry" in kinds(check(ops, gone, RULES))
    # ...but an expiry write whose TTL may have passed explains it.
    short = [*ops[:2], op(EXPIRE, "k1", None, 3.01, 3.02, ttl_ms=1_000)]
    assert "value-undone-by-expiry" not in kinds(check(short, gone, RULES))


def test_an_expiry_write_before_the_set_does_not_count() -> None:
    ops = [op(EXPIRE, "k1", None, 0, 1, ttl_ms=1_000), op(SET, "k1", "v2", 2, 3)]
    assert check(ops, same({"k1": live("v2", 20)}), RULES) == []


# -- FLUSHALL: a delete of every key at its time ------------------------------------------------


def test_a_flush_deletes_what_came_before_it_and_keeps_what_may_have_come_after() -> None:
    ops = [
        op(SET, "k1", "a", 0, 1),
        op(SET, "k2", "b", 0, 1),
        op(FLUSH, ALL_KEYS, None, 2, 3, node="n2"),
        op(SET, "k1", "c", 2.5, 3.5),  # concurrent with the flush: either way
        op(SET, "k2", "d", 4, 5),  # after the flush completed: must survive
    ]
    assert check(ops, same({"k2": live("d", 50)}), RULES) == []
    assert check(ops, same({"k1": live("c", 40), "k2": live("d", 50)}), RULES) == []


def test_a_value_written_before_an_acknowledged_flush_coming_back_is_caught() -> None:
    ops = [op(SET, "k1", "a", 0, 1), op(FLUSH, ALL_KEYS, None, 2, 3, node="n2")]
    found = check(ops, same({"k1": live("a", 10)}), RULES)
    assert kinds(found) == ["lost-write", "read-after-flush"]
    read = next(v for v in found if v.kind == "read-after-flush")
    assert read.ops == (ops[0].op_id, ops[1].op_id) and "flush *" in read.detail
    # Read back through one node only, while the owners hold nothing: still caught.
    n1 = view("n1", {}, reads={"k1": "a"})
    assert kinds(check(ops, snap(n1, view("n2", {})), RULES)) == ["read-after-flush"]


def test_a_write_after_an_acknowledged_flush_must_survive_it() -> None:
    ops = [op(FLUSH, ALL_KEYS, None, 0, 1), op(SET, "k1", "a", 2, 3)]
    assert kinds(check(ops, same({}), RULES)) == ["missing"]  # gone, and nothing evicted


def test_a_flush_of_unknown_outcome_may_or_may_not_have_happened() -> None:
    unknown = [op(SET, "k1", "a", 0, 1), op(FLUSH, ALL_KEYS, None, 2, 3, outcome=INFO)]
    assert check(unknown, same({"k1": live("a", 10)}), RULES) == []
    assert check(unknown, same({}), RULES) == []
    failed = [unknown[0], replace(unknown[1], outcome=FAIL)]  # certainly did nothing
    assert kinds(check(failed, same({}), RULES)) == ["missing"]


# -- nodes that left ------------------------------------------------------------------------------


def test_a_node_that_left_is_no_owner_any_more() -> None:
    ops = [op(SET, "k1", "a", 0, 1)]
    held = same({"k1": live("a", 20)})
    assert check(ops, held, Rules(is_ttl_key, departed=frozenset({"n3"}))) == []
    stale = {k: ("n1", "n3") for k in ("k1", "k2", "t1")}
    named = snap(
        view("n1", {"k1": live("a", 20)}, owners=stale),
        view("n2", {"k1": live("a", 20)}, owners=stale),
    )
    found = check(ops, named, Rules(is_ttl_key, departed=frozenset({"n3"})))
    assert kinds(found) == ["departed-owner"] and found[0].nodes == ("n3",)


# -- the property --------------------------------------------------------------------------------

steps = st.lists(st.sampled_from([SET, DEL]), min_size=1, max_size=12)


@given(steps, st.data())
def test_sequential_histories_pass_and_resurrections_are_caught(
    kinds_: list[str], data: st.DataObject
) -> None:
    ops = [
        op(kind, "k1", f"v{i}" if kind == SET else None, 2 * i, 2 * i + 1)
        for i, kind in enumerate(kinds_)
    ]
    last = ops[-1]
    final = live(last.value or "", 100) if last.kind == SET else tomb(100)
    assert check(ops, same({"k1": final}), RULES) == []
    older = [o for o in ops[:-1] if o.kind == SET]
    if older:
        back = data.draw(st.sampled_from(older))
        found = check(ops, same({"k1": live(back.value or "", 200)}), RULES)
        assert "lost-write" in kinds(found)
