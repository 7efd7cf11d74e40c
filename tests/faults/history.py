"""The history of a run: every operation the workload made, its outcome and timing.

An operation is recorded once it completed (or failed), with the monotonic times of
its invocation and completion (seconds since the run began, comparable across
threads) and the wall-clock time at invocation (to judge when a TTL ran out). The
outcome is Jepsen's:

- `ok`: the node acknowledged it (OK, an integer, a value or nil).
- `fail`: it certainly did not happen: refused before any work (`LOADING`), or no
  connection could be made.
- `info`: unknown: a timeout, a lost connection, or an error after the coordinator may
  have written (`NOREPLICAS`, `CLUSTERDOWN`...). It may take effect at any time later
  (a paused node may run a request it read long ago), so its completion is taken as
  never.

A cluster-wide FLUSHALL is an operation too (`flush`, on every key at once: its key is
`ALL_KEYS`); the checker reads it as a delete of every key at its time.

Values written are unique per operation (`<client>.<seq>`), so a value read back names
the write that produced it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

OK, FAIL, INFO = "ok", "fail", "info"
SET, DEL, GET = "set", "del", "get"
# Writes of the expiry alone (EXPIRE, PEXPIRE, PERSIST, GETEX EX...): `ttl_ms` the TTL
# they set, 0 for PERSIST. They never change the value.
EXPIRE = "expire"
# FLUSHALL: empties every key of every node at one version (issued by the harness).
FLUSH = "flush"
ALL_KEYS = "*"
NEVER = float("inf")


@dataclass(frozen=True, slots=True)
class Op:
    op_id: int
    client: int
    kind: str  # set, del, expire, flush or get
    key: str
    value: str | None  # written (set) or read (get; None for nil)
    ttl_ms: int  # set: its TTL, 0 for none
    node: str  # the node the request went to
    start_s: float
    end_s: float
    start_wall_ms: int
    outcome: str  # ok, fail or info
    error: str = ""

    @property
    def is_write(self) -> bool:
        return self.kind in (SET, DEL, FLUSH)

    @property
    def deletes(self) -> bool:
        """A DEL of its key, or a FLUSHALL (a delete of every key)."""
        return self.kind in (DEL, FLUSH)

    @property
    def acked(self) -> bool:
        return self.outcome == OK

    @property
    def may_have_happened(self) -> bool:
        return self.outcome != FAIL

    @property
    def effective_end_s(self) -> float:
        """When it was certainly done: its completion if acknowledged, else never."""
        return self.end_s if self.outcome == OK else NEVER

    def precedes(self, other: Op, margin_s: float = 0.0) -> bool:
        """Whether this op certainly took effect before `other` was even invoked, by more
        than `margin_s` (the nodes' clock skew: versions order writes closer than that
        either way, see checker.Rules)."""
        return self.effective_end_s + margin_s < other.start_s

    def describe(self) -> str:
        what = f"{self.kind} {self.key}"
        if self.value is not None:
            what += f"={self.value}"
        if self.ttl_ms:
            what += f" px={self.ttl_ms}"
        err = f" ({self.error})" if self.error else ""
        return (
            f"#{self.op_id} c{self.client}@{self.node} {what} -> {self.outcome}{err}"
            f" [{self.start_s:.3f}, {self.end_s:.3f}]"
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A fault or harness step, kept beside the operations for reading a history."""

    at_s: float
    what: str


class History:
    """Operations and events of one run; appended from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._events: list[Event] = []
        self._next_id = 0

    def next_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def add(self, op: Op) -> None:
        with self._lock:
            self._ops.append(op)

    def note(self, at_s: float, what: str) -> None:
        with self._lock:
            self._events.append(Event(at_s, what))

    @property
    def ops(self) -> list[Op]:
        with self._lock:
            return sorted(self._ops, key=lambda op: (op.start_s, op.op_id))

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def excerpt(self, key: str, since_op: int | None = None, limit: int = 40) -> list[str]:
        """One key's operations and the flushes, for a violation's report: from operation
        `since_op` (the earliest it implicates) on, or the last ones; at most `limit`,
        eliding the middle."""
        ops = [op for op in self.ops if op.key in (key, ALL_KEYS)]
        first = next((i for i, op in enumerate(ops) if op.op_id == since_op), len(ops) - 12)
        lines = [op.describe() for op in ops[max(first, 0) :]]
        if len(lines) > limit:
            half = limit // 2
            lines = [*lines[:half], f"... {len(lines) - limit} more ...", *lines[-half:]]
        return lines

    def dump(self, path: Path) -> None:
        """The whole history as JSON lines: events first, then operations."""
        with open(path, "w") as out:
            for event in self.events:
                out.write(json.dumps({"event": asdict(event)}) + "\n")
            for op in self.ops:
                out.write(json.dumps(asdict(op)) + "\n")
