"""Schedules as data: a seed replays its schedule, faults never overlap, and the
runner's derived numbers (clock skew spread, minimum settle time) follow the schedule.
No processes."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from .faults import LINK_FAULTS, Fault, Skew, describe
from .runner import SETTLE_MARGIN_S, settle_min_s, skew_span_ms
from .schedules import CI_SCHEDULES, EXTRA, KNOWN_BUG, NAMED, random_schedule
from .wire import Error
from .workload import classify


@given(st.integers(min_value=1, max_value=2**31))
def test_a_seed_replays_its_schedule_and_faults_follow_each_other(seed: int) -> None:
    schedule = random_schedule(seed)
    assert random_schedule(seed) == schedule
    ids = {n.node_id for n in schedule.nodes}
    assert len(ids) == len(schedule.nodes) and 3 <= len(ids) <= 6
    regions = {n.region for n in schedule.nodes}
    assert regions in ({"r1"}, {"eu", "us"})
    end = 0.0
    for step in schedule.steps:
        assert step.at_s >= end, "a fault began before the previous one healed"
        end = step.at_s + step.duration_s
        assert nodes_of(step.fault) <= ids, describe(step.fault)
        assert step.fault.kind != "region-split" or len(regions) == 2


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
