"""The bounded set of fault schedules CI runs: each must end with no violation.

Each schedule runs the whole loop (runner.py): nodes in namespaces, the workload, the
faults, heal, settle, check. The `-hog` schedules run under contention: busy processes
beside the nodes and short SIGSTOPs of whole nodes between the faults. Besides the
checker's verdict, each test asserts that its faults really happened and did what they
do (a killed node refused connections, a paused one left requests unanswered, small
nodes evicted, both flushes were acknowledged, a node that joined was read at the end
and one that left was not), so a harness that quietly did nothing cannot pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .runner import RunResult, run_schedule
from .schedules import CI_SCHEDULES, Schedule

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def refused_some(result: RunResult) -> bool:
    """Requests to a killed node failed to connect (recorded as `fail`)."""
    return result.outcomes["fail"] > 0


def left_some_unanswered(result: RunResult) -> bool:
    """Requests to a paused node timed out (recorded as `info`)."""
    return result.outcomes["info"] > 0


def evicted(result: RunResult) -> bool:
    return sum(result.room_losses.values()) > 0


def checked(node_id: str, result: RunResult) -> bool:
    """The node was running, and read by the checker, at the end."""
    return node_id in result.room_losses


# What each schedule's faults must visibly have done.
EFFECTS: dict[str, Callable[[RunResult], bool]] = {
    "crash-restart": refused_some,
    "clock-skew": refused_some,
    "eviction": lambda r: refused_some(r) and evicted(r),
    "pause": left_some_unanswered,
    "flush-partition": lambda r: r.acked["flush"] == 2,
    "churn-after-heal-join": lambda r: checked("n4", r),
    "churn-after-heal-leave": lambda r: refused_some(r) and not checked("n3", r),
}


def explain(result: RunResult) -> str:
    lines = [f"{len(result.violations)} violation(s); logs and history in {result.workdir}"]
    lines += [f"  {v}" for v in result.violations[:20]]
    for key, excerpt in list(result.excerpts.items())[:5]:
        lines += [f"  history of {key}:", *(f"    {line}" for line in excerpt)]
    return "\n".join(lines)


@pytest.mark.parametrize("make", CI_SCHEDULES, ids=lambda make: make().name)
@pytest.mark.usefixtures("fault_host")
def test_schedule(
    make: Callable[[], Schedule], tmp_path: Path, record_result: Callable[[RunResult], None]
) -> None:
    schedule = make()
    result = run_schedule(schedule, tmp_path / schedule.name)
    record_result(result)
    assert result.skipped == [], "faults skipped: the cluster never got quiet before a crash"
    blips = result.faults.pop("blip", 0)
    assert sum(result.faults.values()) == len(schedule.all_steps)
    assert blips > 0 if schedule.blips else blips == 0, f"{blips} short pauses"
    assert result.outcomes["ok"] >= 100, f"the workload barely ran: {result.outcomes}"
    assert result.violations == [], explain(result)
    effect = EFFECTS.get(schedule.name)
    assert effect is None or effect(result), f"{schedule.name}: no sign of its faults"
