"""The end-of-run table and its JSON: schedules, operations, faults by kind, violations.

Used by the pytest session (conftest.py) and by scripts/soak.py alike, so CI and soak
runs print the same table and write the same JSON (`write_json`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .runner import RunResult

COLUMNS = ("schedule", "seed", "nodes", "ops", "ok", "info", "fail", "faults", "violations", "s")


def totals(results: Sequence[RunResult]) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    violations: Counter[str] = Counter()
    for r in results:
        outcomes.update(r.outcomes)
        faults.update(r.faults)
        violations.update(v.kind for v in r.violations)
    return {
        "schedules": len(results),
        "operations": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "faults": dict(sorted(faults.items())),
        "skipped_faults": sum(len(r.skipped) for r in results),
        "violations": sum(violations.values()),
        "violations_by_kind": dict(sorted(violations.items())),
    }


def _row(r: RunResult) -> tuple[str, ...]:
    faults = " ".join(f"{k}:{n}" for k, n in sorted(r.faults.items())) or "-"
    return (
        r.schedule,
        str(r.seed),
        str(r.nodes),
        str(r.operations),
        str(r.outcomes.get("ok", 0)),
        str(r.outcomes.get("info", 0)),
        str(r.outcomes.get("fail", 0)),
        faults,
        str(len(r.violations)),
        f"{r.total_s:.0f}",
    )


def _counts(counts: object) -> str:
    assert isinstance(counts, dict)
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "none"


def table(results: Sequence[RunResult]) -> str:
    """A plain-text table, one row per schedule, then the totals."""
    t = totals(results)
    rows = [COLUMNS, *(_row(r) for r in results)]
    rows.append(("total", "", "", str(t["operations"]), "", "", "", "", str(t["violations"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"schedules: {t['schedules']}   operations: {t['operations']}")
    lines.append(f"faults by kind: {_counts(t['faults'])}")
    lines.append(f"violations by kind: {_counts(t['violations_by_kind'])}")
    for r in results:
        lines += [f"  {r.schedule} (seed {r.seed}): {v}" for v in r.violations[:10]]
    return "\n".join(lines)


def as_json(results: Sequence[RunResult]) -> dict[str, object]:
    runs = []
    for r in results:
        runs.append(
            {
                "schedule": r.schedule,
                "seed": r.seed,
                "nodes": r.nodes,
                "operations": r.operations,
                "outcomes": dict(r.outcomes),
                "faults": dict(r.faults),
                "skipped_faults": r.skipped,
                "violations": [asdict(v) for v in r.violations],
                "history_excerpts": r.excerpts,
                "room_losses": r.room_losses,
                "checks": r.checks,
                "transient_violations": dict(r.transient),
                "workload_s": round(r.workload_s, 2),
                "settle_s": round(r.settle_s, 2),
                "total_s": round(r.total_s, 2),
                "workdir": r.workdir,
            }
        )
    return {"totals": totals(results), "schedules": runs}


def write_json(results: Sequence[RunResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(as_json(results), indent=2) + "\n")
