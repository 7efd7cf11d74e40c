#!/usr/bin/env python3
"""Soak: run N random fault schedules, printing each one's seed so it can be replayed.

    make soak                 # 5 random schedules
    make soak N=20            # 20
    make soak SEED=1234       # replay one schedule by its seed
    make soak N=100 HOG=2     # under contention: 2 busy processes, short node pauses
    make soak N=100 FIRST=1   # the seeds 1 to 100 (a range to quote and replay)
    .venv/bin/python scripts/soak.py --schedule partitions   # one of CI's, by name

Needs root (network namespaces, iptables), like the fault tests. Each run's nodes' logs
and history go to build/faults/soak-<time>/<n>-<schedule>/; the table at the end is also
written as JSON (build/faults/soak.json unless --json says otherwise). Exits 1 if any
schedule found a violation or could not run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from faults import report, schedules  # noqa: E402
from faults.faults import describe  # noqa: E402
from faults.runner import HarnessError, RunResult, run_schedule  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="random schedules to run (5)")
    parser.add_argument("--seed", type=int, action="append", help="replay this seed (repeatable)")
    parser.add_argument(
        "--first-seed",
        type=int,
        metavar="S",
        help="run the seeds S, S+1, ... (--runs of them) rather than random ones",
    )
    parser.add_argument(
        "--schedule",
        action="append",
        choices=sorted(schedules.NAMED),
        help="run a named schedule (repeatable)",
    )
    parser.add_argument(
        "--cpu-hog",
        type=int,
        default=0,
        metavar="N",
        help="N busy processes beside the nodes, and short pauses of whole nodes (0: none)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "build" / "faults" / "soak.json")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and histories")
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace) -> list[schedules.Schedule]:
    if args.schedule or args.seed:
        picked = [schedules.NAMED[name]() for name in args.schedule or []]
        picked += [schedules.random_schedule(seed) for seed in args.seed or []]
    else:
        if args.first_seed is not None:
            seeds = list(range(args.first_seed, args.first_seed + args.runs))
        else:
            rng = random.Random()
            seeds = [rng.randrange(1, 2**31) for _ in range(args.runs)]
        picked = [schedules.random_schedule(seed) for seed in seeds]
    if args.cpu_hog:
        picked = [replace(s, cpu_hogs=args.cpu_hog, blips=True) for s in picked]
    return picked


def shown(step: schedules.Step) -> str:
    """`1s split(n1 | n2,n3)`, with the steps made during it: `[+3s flush(n1)]`."""
    during = "".join(f" [+{s.at_s:g}s {describe(s.fault)}]" for s in step.during)
    return f"{step.at_s:g}s {describe(step.fault)}{during}"


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces and iptables)", file=sys.stderr)
        return 2
    workdir = args.workdir or REPO / "build" / "faults" / time.strftime("soak-%Y%m%d-%H%M%S")
    results: list[RunResult] = []
    failed = 0
    for index, schedule in enumerate(chosen(args), 1):
        steps = ", ".join(shown(s) for s in schedule.steps)
        print(f"seed {schedule.seed}: {schedule.name}, {len(schedule.nodes)} nodes: {steps}")
        sys.stdout.flush()
        try:
            result = run_schedule(schedule, workdir / f"{index:03d}-{schedule.name}")
        except HarnessError as exc:
            print(f"  could not run: {exc}")
            failed += 1
            continue
        results.append(result)
        replay = (
            f"make soak SEED={schedule.seed}"
            if schedule.name.startswith("random-")
            else f"scripts/soak.py --schedule {schedule.name}"
        )
        print(
            f"  {result.operations} operations, {len(result.violations)} violation(s),"
            f" {result.total_s:.0f}s (replay: {replay})"
        )
    print()
    print(report.table(results))
    report.write_json(results, args.json)
    print(f"\nJSON: {args.json}\nlogs and histories: {workdir}")
    return 1 if failed or any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
