"""The read-through: how a node answers a GET miss from its origin (DESIGN.md section 8).

`ReadThrough.fill(key)` is the node's `Filler`. In turn it answers with:

1. nothing, if the origin said "no such key" less than `negative_ttl_s` ago;
2. the outcome of a load of the key that ended less than SETTLE_MS ago;
3. the outcome of the key's load, joining the one in flight if there is one
   (singleflight: one load per key however many wait).

A load takes one of `origin_concurrency` slots and must finish, slot wait included,
within `origin_timeout_s`; while the circuit breaker is open (breaker.py) it is not
tried at all. When it fails, the last value loaded for the key is answered, not
stored, while it is no older than its TTL plus `max_stale_s` (stale-if-error, from
the stale shelf); with nothing that recent, the answer is an error reply.

Why step 2: the waiters of a load store its value when they resume, a few loop turns
after it ended. A miss arriving in those turns would find neither the value nor the
load, and load the key again; reusing the outcome for a moment closes that gap. It
is the answer that miss would have had a moment earlier by joining the load.

Writes win over loads (`forget`, which the store calls on every change): a write,
delete or flush of a key drops what the shelves remember of it (the settled outcome,
the stale value, a "no such key"), and a load of it in flight when that happened
answers nil and stores nothing, so a value the origin gave before a delete never
lands after it. Eviction and expiry drop only the settled outcome: the next miss loads
afresh, and the last value stays for stale-if-error.

Memory is bounded, beside max_bytes: the stale shelf by a tenth of max_bytes, negative
answers by a hundredth (64 MiB and 8 MiB on a node without max_bytes), settled outcomes
by time (the loads of SETTLE_MS); in-flight loads by the keys being read at once.
Stale values are kept where they were loaded, at the key's primary: a new primary
(after a membership change) has none until it loads the key itself.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from dataclasses import dataclass, fields
from time import perf_counter_ns
from typing import TYPE_CHECKING

from geocache.clock import Clock
from geocache.config import NodeConfig
from geocache.fill import Fill
from geocache.observability.events import NO_EVENTS, EventSink
from geocache.observability.metrics import LATENCY_BOUNDS_NS, SUM_INDEX, new_slot
from geocache.origin.breaker import CLOSED, Breaker
from geocache.origin.loaders import Loader, ValueTooLarge
from geocache.origin.shelf import Shelf
from geocache.protocol.types import Error
from geocache.singleflight import AsyncFlights

if TYPE_CHECKING:
    from geocache.origin.refresh import Refresher

log = logging.getLogger("geocache.origin")

Outcome = Fill | Error | None
# How long a finished load still answers misses of its key (see the module docstring):
# the few loop turns its waiters take to store the value, with room for a busy loop.
SETTLE_MS = 100
# Shares of max_bytes for the stale shelf and the negative answers; and their budgets
# on a node without max_bytes.
STALE_SHARE, NEGATIVE_SHARE = 10, 100
STALE_BYTES_UNLIMITED, NEGATIVE_BYTES_UNLIMITED = 64 << 20, 8 << 20
# Settled outcomes are few (the loads of SETTLE_MS); a generous budget that holds them.
SETTLED_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Settings:
    ttl_ms: int
    timeout_s: float
    concurrency: int
    max_stale_ms: int
    negative_ttl_ms: int
    max_value_bytes: int
    breaker_failures: int
    breaker_reset_ms: int
    stale_bytes: int
    negative_bytes: int

    @classmethod
    def from_config(cls, config: NodeConfig) -> Settings:
        limit = config.max_bytes
        return cls(
            ttl_ms=round(config.origin_ttl_s * 1000),
            timeout_s=config.origin_timeout_s,
            concurrency=config.origin_concurrency,
            max_stale_ms=round(config.max_stale_s * 1000),
            negative_ttl_ms=round(config.negative_ttl_s * 1000),
            max_value_bytes=config.max_value_bytes,
            breaker_failures=config.origin_breaker_failures,
            breaker_reset_ms=round(config.origin_breaker_reset_s * 1000),
            stale_bytes=limit // STALE_SHARE if limit else STALE_BYTES_UNLIMITED,
            negative_bytes=limit // NEGATIVE_SHARE if limit else NEGATIVE_BYTES_UNLIMITED,
        )


@dataclass(slots=True)
class OriginStats:
    """Plain counters, read by INFO and /metrics at scrape time."""

    loads: int = 0  # loads tried at the origin
    found: int = 0
    not_found: int = 0
    errors: int = 0  # loads that failed other than by timing out
    timeouts: int = 0
    rejected: int = 0  # loads not tried: the breaker was open
    stale_served: int = 0  # misses answered with a stale value after a failure
    failed_fills: int = 0  # misses answered with an error
    coalesced: int = 0  # misses that took a settled load's outcome (see counters())
    negative_hits: int = 0  # misses answered from a remembered "no such key"
    refreshes: int = 0  # refresh-ahead loads that stored a new value
    refresh_failures: int = 0  # refresh-ahead loads that failed (tried again later)
    superseded: int = 0  # loads a write, delete or flush overtook: answered nil, not stored

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ReadThrough:
    def __init__(
        self,
        loader: Loader,
        settings: Settings,
        clock: Clock,
        description: str = "",
        events: EventSink = NO_EVENTS,
    ) -> None:
        self.loader = loader
        self.events = events  # breaker opened and closed, for the dashboard's timeline
        self.settings = settings
        self.description = description  # what INFO shows (no password)
        self.clock = clock
        self._flights: AsyncFlights[Outcome] = AsyncFlights()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.breaker = Breaker(clock, settings.breaker_failures, settings.breaker_reset_ms)
        self.stale: Shelf[bytes] = Shelf(settings.stale_bytes, len)
        self.negative: Shelf[bool] = Shelf(settings.negative_bytes, lambda _: 0)
        self._settled: Shelf[Outcome] = Shelf(SETTLED_BYTES, _outcome_size)
        self.stats = OriginStats()
        self.latency = new_slot()  # load times, as metrics.CommandLatency keeps them
        # Refresh-ahead of hot keys, when configured (service.py sets it).
        self.refresher: Refresher | None = None
        # Keys written, deleted or flushed while their load was in flight.
        self._superseded: set[bytes] = set()

    def content_type(self, key: bytes) -> str | None:
        """The Content-Type an HTTP origin gave `key`'s value when this node loaded it."""
        types: dict[bytes, str] | None = getattr(self.loader, "content_types", None)
        return None if types is None else types.get(key)

    def serves(self, command: bytes) -> bool:
        return command == b"get"

    @property
    def timeout_ms(self) -> int:
        """The longest a fill takes: one deadline covers the wait for a slot and the load."""
        return round(self.settings.timeout_s * 1000)

    def counters(self) -> dict[str, int]:
        """Every counter, `coalesced` counting the misses that joined a load in flight."""
        counters = self.stats.as_dict()
        counters["coalesced"] += self._flights.coalesced
        return counters

    @property
    def loading(self) -> int:
        """Keys with a load in flight (waiting for a slot included)."""
        return len(self._flights)

    async def fill(self, key: bytes) -> Outcome:
        """A GET of `key` missed: what to answer (see the module docstring)."""
        now = self.clock.mono_ms()
        if self.negative.get(key, now):
            self.stats.negative_hits += 1
            return None
        settled = self._settled.get(key, now)
        if settled is not None:
            self.stats.coalesced += 1
            return self._answered(settled)
        outcome = await self._flights.do(key, lambda: self._load(key))
        return self._answered(outcome)

    async def load(self, key: bytes) -> Outcome:
        """A load of `key` for refresh-ahead: joins a read's load, skips remembered answers."""
        return await self._flights.do(key, lambda: self._load(key))

    def _answered(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Error):
            self.stats.failed_fills += 1
        elif outcome is not None and not outcome.store:
            self.stats.stale_served += 1
        return outcome

    def forget(self, key: bytes | None, value: bytes | None, purge: bool) -> None:
        """The store changed `key` (None: every key) to `value` (None: removed); see the
        module docstring. Storing the very value this node loaded is no news."""
        if (
            value is not None
            and key is not None
            and value is self.stale.get(key, self.clock.mono_ms())
        ):
            self._settled.discard(key)
            return
        if key is None:
            self._settled.clear()
            if purge:
                self.stale.clear()
                self.negative.clear()
                self._superseded.update(
                    k for k in self._flights.in_flight() if isinstance(k, bytes)
                )
            return
        self._settled.discard(key)
        if purge:
            self.stale.discard(key)
            self.negative.discard(key)
            if key in self._flights:
                self._superseded.add(key)

    async def _load(self, key: bytes) -> Outcome:
        outcome = await self._try_load(key)
        if key in self._superseded:
            self._superseded.discard(key)
            self.stale.discard(key)
            self.stats.superseded += 1
            return None
        now = self.clock.mono_ms()
        self._settled.put(key, outcome, now + SETTLE_MS, now)
        return outcome

    async def _try_load(self, key: bytes) -> Outcome:
        stats, settings = self.stats, self.settings
        if not self.breaker.allow():
            stats.rejected += 1
            retry_s = self.breaker.retry_in_ms() / 1000
            return self._fallback(key, f"circuit breaker open, next try in {retry_s:.1f} s")
        started = perf_counter_ns()
        try:
            async with asyncio.timeout(settings.timeout_s):
                async with self._slots:
                    stats.loads += 1
                    value = await self.loader.load(key)
        except TimeoutError:
            stats.timeouts += 1
            return self._failed(key, f"timed out after {settings.timeout_s:g} s")
        except ValueTooLarge as exc:
            stats.errors += 1
            return Error(f"ERR {exc} (max-value-bytes)")
        except Exception as exc:
            stats.errors += 1
            log.debug("origin load failed", extra={"key": key[:100], "error": repr(exc)})
            return self._failed(key, _reason(exc))
        finally:
            self._record(perf_counter_ns() - started)
        self._succeeded()
        return self._loaded(key, value)

    def _loaded(self, key: bytes, value: bytes | None) -> Outcome:
        stats, settings = self.stats, self.settings
        now = self.clock.mono_ms()
        if value is None:
            stats.not_found += 1
            self.stale.discard(key)  # gone at the origin: never serve it stale again
            if settings.negative_ttl_ms:
                self.negative.put(key, True, now + settings.negative_ttl_ms, now)
            return None
        limit = settings.max_value_bytes
        if len(value) > limit:  # the origin works: not a failure for the breaker
            stats.errors += 1
            return Error(
                f"ERR origin value of {len(value)} bytes is over {limit} (max-value-bytes)"
            )
        stats.found += 1
        self.negative.discard(key)
        if settings.max_stale_ms:
            until = now + settings.ttl_ms + settings.max_stale_ms
            self.stale.put(key, value, until, now)
        if self.refresher is not None:
            self.refresher.track(key, value)
        return Fill(value, settings.ttl_ms, True)

    def _failed(self, key: bytes, reason: str) -> Outcome:
        was_closed = self.breaker.state == CLOSED
        self.breaker.failure()
        if was_closed and self.breaker.state != CLOSED:
            log.warning("origin circuit breaker opened", extra={"reason": reason})
            self.events.record("breaker_opened", "origin", detail=reason)
        return self._fallback(key, reason)

    def _succeeded(self) -> None:
        if self.breaker.state != CLOSED:
            log.warning("origin circuit breaker closed: the origin answers again")
            self.events.record("breaker_closed", "origin")
        self.breaker.success()

    def _fallback(self, key: bytes, reason: str) -> Outcome:
        """After a failed or refused load: the stale value if there is one, else an error."""
        stale = self.stale.get(key, self.clock.mono_ms())
        if stale is not None:
            return Fill(stale, 0, False)
        return Error(f"ERR origin unavailable: {reason}")

    def _record(self, elapsed_ns: int) -> None:
        slot = self.latency
        slot[bisect_left(LATENCY_BOUNDS_NS, elapsed_ns)] += 1
        slot[SUM_INDEX] += elapsed_ns

    async def close(self) -> None:
        if self.refresher is not None:
            self.refresher.close()
        await self.loader.close()


def _outcome_size(outcome: Outcome) -> int:
    return len(outcome[0]) if isinstance(outcome, Fill) else 0


def _reason(exc: Exception) -> str:
    """A failure as the client sees it: its kind and message, on one line, short."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())[:200]
