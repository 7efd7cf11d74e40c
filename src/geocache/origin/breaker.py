"""A circuit breaker: stop calling an origin that keeps failing, try it again later.

Closed: loads go through; `failures_to_open` failed loads in a row open it. Open: no
load is tried (callers answer from the stale shelf or with an error at once, instead
of each waiting out a timeout against a dead origin), for `reset_ms`. Then half-open:
one trial load goes through while the others are still refused; its success closes the
breaker, its failure opens it for another `reset_ms`.

Sans-IO: the caller reports each load's outcome; time comes from the injected clock.
"""

from __future__ import annotations

from geocache.clock import Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at_ms",
        "_trial",
        "failures_to_open",
        "opened",
        "reset_ms",
        "state",
    )

    def __init__(self, clock: Clock, failures_to_open: int, reset_ms: int) -> None:
        """`failures_to_open` 0: never open."""
        self._clock = clock
        self.failures_to_open = failures_to_open
        self.reset_ms = reset_ms
        self.state = CLOSED
        self.opened = 0  # times it opened, for metrics
        self._failures = 0
        self._opened_at_ms = 0
        self._trial = False  # a half-open trial load is out

    def allow(self) -> bool:
        """Whether a load may be tried now; in half-open state, True once per trial."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock.mono_ms() - self._opened_at_ms < self.reset_ms:
                return False
            self.state = HALF_OPEN
        if self._trial:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self.state = CLOSED
        self._failures = 0
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        self._trial = False
        if self.state == OPEN:  # a load begun before it opened does not extend it
            return
        if self.state == HALF_OPEN or (
            self.failures_to_open and self._failures >= self.failures_to_open
        ):
            self.opened += 1
            self.state = OPEN
            self._opened_at_ms = self._clock.mono_ms()

    def retry_in_ms(self) -> int:
        """How long an open breaker still refuses loads (0 when it would let one try)."""
        if self.state != OPEN:
            return 0
        return max(self.reset_ms - (self._clock.mono_ms() - self._opened_at_ms), 0)
