"""Singleflight: when many callers want the same missing key, one computes it.

`Flights` is for threads, `AsyncFlights` for one asyncio event loop. The first caller
for a key becomes the leader and runs the loader; the others wait for its result or
its exception. The entry is removed when the leader finishes, so a later call runs the
loader again (the caller is expected to have cached the result by then).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.waiters = 0


class Flights(Generic[T]):
    """Thread-safe singleflight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[T]] = {}
        self.coalesced = 0  # callers that waited for another's load

    def do(self, key: Hashable, loader: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
            else:
                call.waiters += 1
                self.coalesced += 1
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result  # type: ignore[return-value]
        try:
            call.result = loader()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result


class AsyncFlights(Generic[T]):
    """Singleflight for coroutines on one event loop.

    The load runs in a task of its own that every caller, the first included, awaits
    through `asyncio.shield`: a caller that is cancelled (a timeout, a client gone)
    stops waiting, but the load goes on for the others and a cancellation never
    reaches them.
    """

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Task[T]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a load of `key` is in flight."""
        return key in self._calls

    def in_flight(self) -> list[Hashable]:
        return list(self._calls)

    async def do(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> T:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(_await(loader))
            self._calls[key] = task
            task.add_done_callback(lambda done: self._finish(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(task)

    def _finish(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            # Retrieve it so a load nobody waited for logs no "never retrieved".
            task.exception()


async def _await(loader: Callable[[], Awaitable[T]]) -> T:
    return await loader()
