"""SWIM failure detection, measured on the simulated network: detection time and false positives.

What it measures, for clusters of 5, 10 and 20 nodes at 1% and 10% packet loss on every
link (2 ms + 0..4 ms jitter one way), with the default `SwimConfig`:

- detection: `--runs` times (default 100), a converged cluster runs for a random part of
  a probe round, then one random node crashes. Reported: time from the crash to the
  first suspicion, to the first DEAD, and to DEAD at every live member (mean and p99,
  simulated ms), beside the documented bound `SwimConfig.detection_bound_ms(n)`.
- false positives: a cluster where every node stays healthy runs for `--minutes`
  simulated minutes (default 60). Any DEAD declaration is a false positive; reported as
  a count over the node-hours run, with false suspicions (each refuted in time) per
  node-hour for context, and the messages each node sends per second.

Everything is simulated time on a ManualClock (nothing sleeps), seeded, so a run
replays exactly with `--seed`. Messages skip the JSON codec here (it changes nothing but
speed; the tests run it). Runtime is bounded: about 20 s with the defaults.

    .venv/bin/python bench/swim.py [--quick] [--runs N] [--minutes M] [--seed S] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from geocache.clock import ManualClock
from geocache.cluster.swim import MemberState, Swim, SwimConfig, local_member

# The simulated network is test machinery (tests/sim), not part of the library.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sim.net import Link, SimNet

SIZES = (5, 10, 20)
LOSSES = (0.01, 0.10)
CONFIG = SwimConfig()
STEP_MS = 10  # observation granularity of detection times, and the driver's tick grid
NEVER = -1
DEFAULT_RUNS, DEFAULT_MINUTES = 100, 60
QUICK_RUNS, QUICK_MINUTES = 10, 5  # --quick: a smoke run of every row, a few seconds


def build(n: int, loss: float, seed: int) -> tuple[SimNet, dict[str, Swim]]:
    """A cluster of n nodes joined through node 0, run until every view is all-ALIVE."""
    clock = ManualClock()
    rng = random.Random(seed)
    net = SimNet(clock, random.Random(rng.random()), Link(delay_ms=2, jitter_ms=4, drop=loss))
    nodes: dict[str, Swim] = {}
    for i in range(n):
        addr = f"10.0.{i}.1:7379"
        node = Swim(
            local_member(f"n{i}", addr, "eu", clock), CONFIG, clock, random.Random(rng.random())
        )
        nodes[addr] = node
        net.add(addr, node)
        net.send_all(addr, node.join(["10.0.0.1:7379"]))
    for _ in range(600):  # at most 60 s to converge
        net.run_for(100)
        if all(len(node.alive()) == n for node in nodes.values()):
            break
    else:
        raise RuntimeError(f"{n} nodes did not converge (seed {seed})")
    for node in nodes.values():
        node.drain_changes()
    return net, nodes


def detection_run(n: int, loss: float, seed: int) -> tuple[int, int, int]:
    """(first suspicion, first DEAD, DEAD everywhere) in ms after a random crash."""
    net, nodes = build(n, loss, seed)
    rng = random.Random(seed)
    net.run_for(rng.randrange(n * CONFIG.probe_interval_ms))
    victim_addr = rng.choice(list(nodes))
    victim = nodes[victim_addr].me.node_id
    net.crash(victim_addr)
    observers = [node for addr, node in nodes.items() if addr != victim_addr]
    first_suspect = first_dead = NEVER
    limit = 2 * CONFIG.detection_bound_ms(n)
    for elapsed in range(STEP_MS, limit + STEP_MS, STEP_MS):
        net.run_for(STEP_MS, STEP_MS)
        states = []
        for node in observers:
            node.drain_changes()
            member = node.member(victim)
            states.append(member.state if member is not None else None)
        if first_suspect == NEVER and MemberState.SUSPECT in states:
            first_suspect = elapsed
        if MemberState.DEAD in states:
            first_suspect = elapsed if first_suspect == NEVER else first_suspect
            first_dead = elapsed if first_dead == NEVER else first_dead
        if all(s is MemberState.DEAD for s in states):
            return first_suspect, first_dead, elapsed
    raise RuntimeError(f"not detected within {limit} ms (n={n}, loss={loss}, seed={seed})")


def false_positive_run(n: int, loss: float, seed: int, minutes: int) -> dict[str, float]:
    net, nodes = build(n, loss, seed)
    sent_before = net.stats["sent"]
    # One event per (member, incarnation, state), however many members observed it.
    deaths: set[tuple[str, int]] = set()
    suspicions: set[tuple[str, int]] = set()
    for _ in range(minutes * 60):
        net.run_for(1_000, STEP_MS)
        for node in nodes.values():
            for _old, new in node.drain_changes():
                event = (new.node_id, new.incarnation)
                if new.state is MemberState.DEAD:
                    deaths.add(event)
                elif new.state is MemberState.SUSPECT:
                    suspicions.add(event)
    node_hours = n * minutes / 60
    return {
        "false_dead": len(deaths),
        "false_suspicions_per_node_hour": len(suspicions) / node_hours,
        "node_hours": node_hours,
        "msgs_per_node_s": (net.stats["sent"] - sent_before) / (n * minutes * 60),
    }


def p99(values: list[int]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def measure(n: int, loss: float, runs: int, minutes: int, seed: int) -> dict[str, Any]:
    samples = [detection_run(n, loss, seed * 1_000_003 + r) for r in range(runs)]
    first_suspect, first_dead, all_dead = (list(col) for col in zip(*samples, strict=True))
    return {
        "n": n,
        "loss": loss,
        "runs": runs,
        "suspect_mean_ms": statistics.fmean(first_suspect),
        "first_dead_mean_ms": statistics.fmean(first_dead),
        "all_dead_mean_ms": statistics.fmean(all_dead),
        "all_dead_p99_ms": p99(all_dead),
        "all_dead_max_ms": max(all_dead),
        "bound_ms": CONFIG.detection_bound_ms(n),
        "suspicion_timeout_ms": CONFIG.suspicion_timeout_ms(n),
        **false_positive_run(n, loss, seed, minutes),
    }


def print_table(rows: list[dict[str, Any]], minutes: int, console: Console) -> None:
    table = Table(
        title=f"SWIM on the simulator (probe {CONFIG.probe_interval_ms} ms, timeout "
        f"{CONFIG.probe_timeout_ms} ms, k={CONFIG.indirect_probes}, "
        f"suspicion x{CONFIG.suspicion_mult}); detection times in simulated ms"
    )
    columns = (
        "nodes", "loss", "1st suspect", "1st DEAD", "all DEAD mean", "all DEAD p99",
        "max", "bound", "false DEAD", "false suspect /node-h", "msgs /node/s",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["n"]),
            f"{r['loss']:.0%}",
            f"{r['suspect_mean_ms']:,.0f}",
            f"{r['first_dead_mean_ms']:,.0f}",
            f"{r['all_dead_mean_ms']:,.0f}",
            f"{r['all_dead_p99_ms']:,.0f}",
            f"{r['all_dead_max_ms']:,}",
            f"{r['bound_ms']:,}",
            f"{r['false_dead']} in {r['node_hours']:g} node-h",
            f"{r['false_suspicions_per_node_hour']:.1f}",
            f"{r['msgs_per_node_s']:.1f}",
        )
    console.print(table)
    console.print(
        f"{rows[0]['runs']} crashes per row; false positives over {minutes} simulated "
        "minutes per row (every node healthy)."
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke test: few crashes, 1 minute")
    p.add_argument("--runs", type=int, help=f"crashes per row (default {DEFAULT_RUNS})")
    p.add_argument("--minutes", type=int, help=f"healthy minutes per row ({DEFAULT_MINUTES})")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    args.runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    args.minutes = args.minutes or (QUICK_MINUTES if args.quick else DEFAULT_MINUTES)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    started = time.perf_counter()
    rows = []
    for loss in LOSSES:
        for n in SIZES:
            rows.append(measure(n, loss, args.runs, args.minutes, args.seed))
            console.print(f"n={n} loss={loss:.0%} done at {time.perf_counter() - started:.1f} s")
    print_table(rows, args.minutes, console)
    console.print(f"took {time.perf_counter() - started:.1f} s of real time")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": repr(CONFIG), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
