"""Schedules as data: a seed replays its schedule, faults never overlap, and the
runner's derived numbers (clock skew spread, minimum settle time) follow the schedule.
No processes."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from .faults import LINK_FAULTS, Fault, Join, Leave, Skew, describe
from .runner import SETTLE_MARGIN_S, settle_min_s, skew_span_ms
from .schedules import CI_SCHEDULES, EXTRA, KNOWN_BUG, NAMED, base_schedule, random_schedule
from .wire import Error
from .workload import classify


@given(st.integers(min_value=1, max_value=2**31))
def test_a_seed_replays_its_schedule_and_faults_follow_each_other(seed: int) -> None:
    schedule = random_schedule(seed)
    assert random_schedule(seed) == schedule
    ids = {n.node_id for n in schedule.nodes}
    assert len(ids) == len(schedule.nodes) and 3 <= len(ids) <= 7
    regions = {n.region for n in schedule.nodes}
    assert regions in ({"r1"}, {"eu", "us"})
    end = 0.0
    for step in schedule.steps:
        assert step.at_s >= end, "a fault began before the previous one healed"
        end = step.at_s + step.duration_s
        assert nodes_of(step.fault) <= ids, describe(step.fault)
        assert step.fault.kind != "region-split" or len(regions) == 2
        for inner in step.during:  # a flush, within its link fault
            assert step.fault.kind in LINK_FAULTS and inner.at_s <= step.duration_s
    late = {n.node_id for n in schedule.nodes if n.starts_late}
    joins = [s.fault.node for s in schedule.steps if isinstance(s.fault, Join)]
    assert sorted(joins) == sorted(late)
    leaves = [i for i, s in enumerate(schedule.steps) if isinstance(s.fault, Leave)]
    assert leaves in ([], [len(schedule.steps) - 1]), "a node that left is named later"


@given(st.integers(min_value=1, max_value=2**31))
def test_churn_only_adds_to_what_a_seed_drew_before(seed: int) -> None:
    base, churned = base_schedule(seed), random_schedule(seed)
    assert [n for n in churned.nodes if not n.starts_late] == list(base.nodes)
    kept = [s for s in churned.steps if not isinstance(s.fault, Join | Leave)]
    assert [dataclasses.replace(s, during=()) for s in kept] == list(base.steps)


def test_old_seeds_draw_what_they_drew_before_churn_was_added() -> None:
    """The base schedule of the seed KNOWN_BUG replays, as soak printed it."""
    s = base_schedule(160273718)
    assert [(n.node_id, n.max_keys) for n in s.nodes] == [(f"n{i}", 12) for i in range(1, 5)]
    assert [(t.at_s, describe(t.fault), t.duration_s) for t in s.steps] == [
        (0.89, "isolate(n4 | n1,n2,n3)", 2.4),
        (7.98, "partition(n3, n2)", 8.79),
        (20.15, "split(n3 | n1,n2,n4)", 7.93),
    ]
    assert NAMED["seed-160273718-hog"]().steps == s.steps


def nodes_of(fault: Fault) -> set[str]:
    """The node ids a fault names: its str and tuple-of-str fields but its kind."""
    assert dataclasses.is_dataclass(fault)
    out: set[str] = set()
    for f in dataclasses.fields(fault):
        value = getattr(fault, f.name)
        if f.name != "kind" and isinstance(value, str):
            out.add(value)
        elif isinstance(value, tuple):
            out.update(value)
    return out


def test_named_schedules_name_their_nodes_and_ci_and_soak_do_not_overlap() -> None:
    assert not set(CI_SCHEDULES) & set(KNOWN_BUG + EXTRA)
    for name, make in NAMED.items():
        schedule = make()
        assert schedule.name == name
        ids = {n.node_id for n in schedule.nodes}
        assert set(schedule.clients_on) <= ids
        assert all(nodes_of(step.fault) <= ids for step in schedule.steps), name
    split = NAMED["two-region-split"]()
    assert {n.region for n in split.nodes} == {"eu", "us"}
    assert split.steps[0].fault.kind == "region-split"


def test_skew_spread_and_minimum_settle_follow_the_faults() -> None:
    make = NAMED["clock-skew"]
    assert skew_span_ms(make()) == 4_000  # +2000 from the start, -2000 after a restart
    assert any(isinstance(s.fault, Skew) for s in make().steps)
    assert skew_span_ms(NAMED["partitions"]()) == 0
    longest = max(s.duration_s for s in NAMED["partitions"]().steps if s.fault.kind in LINK_FAULTS)
    assert settle_min_s(NAMED["partitions"]()) == longest + SETTLE_MARGIN_S
    assert settle_min_s(NAMED["crash-restart"]()) == SETTLE_MARGIN_S  # no link cut


def test_replies_are_classified_as_jepsen_would() -> None:
    assert classify(b"OK") == ("ok", "OK", "")
    assert classify(None) == ("ok", None, "")
    assert classify(1) == ("ok", None, "")
    assert classify(Error("LOADING geocache is joining"))[0] == "fail"  # refused, did nothing
    assert classify(Error("NOREPLICAS Not enough good replicas"))[0] == "info"  # may have written
