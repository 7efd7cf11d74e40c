"""Rate-limited log lines: one line per kind of event per interval, the rest counted.

Events an outsider can cause at will (a wrong password, a forged peer proof, a version
from the far future) must be logged, but a flood of them must not become a flood of
log lines: each kind of event logs at most once per `interval_s`, and the next line it
logs says how many were held back meanwhile (`suppressed=n`). Kinds are bounded too, so
a sender choosing event text cannot grow memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# One line per kind of event per 10 s: enough to see an attack start, stop and go on.
INTERVAL_S = 10.0
# Kinds remembered at once; past this the oldest is forgotten (its next line logs).
MAX_KINDS = 256


class LogThrottle:
    """Logs `event` lines on `logger`, at most one per kind per `interval_s`."""

    __slots__ = ("_interval_s", "_kinds", "_logger", "_now")

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._now = now
        # kind -> [when the next line may go out (s), lines held back since the last]
        self._kinds: dict[str, list[float]] = {}

    def warning(self, event: str, kind: str = "", **fields: object) -> bool:
        """Log `event` with `fields` unless its kind (default: the event) logged lately;
        True if the line went out."""
        key = kind or event
        now = self._now()
        state = self._kinds.get(key)
        if state is not None and now < state[0]:
            state[1] += 1
            return False
        if state is None and len(self._kinds) >= MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        held = int(state[1]) if state is not None else 0
        self._kinds[key] = [now + self._interval_s, 0]
        if held:
            fields["suppressed"] = held
        self._logger.warning(event, extra=fields)
        return True
