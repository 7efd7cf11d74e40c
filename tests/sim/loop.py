"""A virtual-time event loop for simulated clusters, and the clock nodes read from it.

No real I/O happens in a simulation (the network is simulated: wire.py), so when no
callback is ready the loop has nothing to wait for but its next timer, and `select`
moves the clock straight there. asyncio's sleeps, timeouts and `call_later` all read
`loop.time()`, so a node's 50 ms ticks, 500 ms peer timeouts and 60 s repair pauses
cost microseconds of real time and still happen in the order real time would give.

Determinism: ready callbacks run first in, first out, and timers in `when` order (ties
in the order they were scheduled), so a run replays exactly from the same seeds as long
as the code under test reads no real clock and no unseeded randomness.

Ownership: every simulated node runs its callbacks and tasks in its own
`contextvars.Context`, whose `OWNER` names the node (one object per incarnation). Tasks
inherit the context they are created in, and the loop files each one under its owner,
so a crash cancels exactly that node's work (`cancel_owned`) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

# The simulated node a callback or task belongs to (None: the test's own code).
OWNER: contextvars.ContextVar[object | None] = contextvars.ContextVar("sim_owner", default=None)

# Wall-clock ms at virtual time 0: any fixed date will do; this one is 2023-11-14.
WALL_EPOCH_MS = 1_700_000_000_000
# Virtual seconds a run may take: an hour is far beyond any scenario, and a minute or so
# of real time for a few nodes, so a run that waits forever fails instead of hanging.
LIMIT_S = 3600.0
# Monotonic ms at virtual time 0: nonzero, as a real monotonic clock is.
MONO_EPOCH_MS = 1_000_000


class SimDeadlock(RuntimeError):
    """Nothing is ready and no timer is set: whatever the run waits for can never happen."""


class SimTimeLimit(RuntimeError):
    """Virtual time passed the loop's limit: something waits for what never comes, while
    periodic timers keep the clock moving (a reply that never arrives, say)."""


class _Jump:
    """The loop's selector: waiting for I/O means moving the clock to the next timer."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[object]:
        if timeout is None:
            raise SimDeadlock("no callback ready and no timer set")
        loop = self._loop
        loop.advance_ns(math.ceil(timeout * 1e9))
        if loop.time() > loop.limit_s:
            raise SimTimeLimit(f"virtual time passed {loop.limit_s:g} s")
        return []


class VirtualTimeLoop(asyncio.BaseEventLoop):
    """An asyncio loop on a virtual clock that starts at 0 and jumps when idle."""

    def __init__(self, limit_s: float = LIMIT_S) -> None:
        """`limit_s`: virtual seconds after which the run fails (SimTimeLimit)."""
        super().__init__()
        self.limit_s = limit_s
        self._now_ns = 0
        self._selector = _Jump(self)
        # Owner -> its unfinished tasks (a dict keeps creation order, so a crash cancels
        # them in the same order on every run).
        self._owned: dict[object, dict[asyncio.Task[Any], None]] = {}
        # Errors the loop would have logged (an exception nobody retrieved, a failed
        # callback): a simulation collects them so a test can say none happened.
        self.errors: list[dict[str, Any]] = []
        self.set_exception_handler(lambda _loop, context: self.errors.append(context))

    def time(self) -> float:
        return self._now_ns / 1e9

    @property
    def now_ms(self) -> int:
        return self._now_ns // 1_000_000

    def advance_ns(self, ns: int) -> None:
        self._now_ns += max(ns, 0)

    def _process_events(self, event_list: list[object]) -> None:
        """No I/O: nothing to process."""

    def _write_to_self(self) -> None:
        """No other thread wakes this loop (call_soon_threadsafe is never needed here)."""

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: object = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        owner = context.get(OWNER) if context is not None else OWNER.get()
        if owner is not None:
            tasks = self._owned.setdefault(owner, {})
            tasks[task] = None
            task.add_done_callback(lambda t: tasks.pop(t, None))
        return task

    def cancel_owned(self, owner: object) -> int:
        """Cancel every unfinished task of `owner` (a crash); returns how many."""
        tasks = self._owned.pop(owner, {})
        for task in list(tasks):
            task.cancel()
        return len(tasks)


def owned_context(owner: object) -> contextvars.Context:
    """A context whose callbacks and tasks belong to `owner`."""
    context = contextvars.copy_context()
    context.run(OWNER.set, owner)
    return context


class SimClock:
    """A node's clock on the loop's virtual time; `offset_ms` skews its wall clock."""

    __slots__ = ("_loop", "offset_ms")

    def __init__(self, loop: VirtualTimeLoop, offset_ms: int = 0) -> None:
        self._loop = loop
        self.offset_ms = offset_ms

    def wall_ms(self) -> int:
        return WALL_EPOCH_MS + self.offset_ms + self._loop.now_ms

    def mono_ms(self) -> int:
        return MONO_EPOCH_MS + self._loop.now_ms
