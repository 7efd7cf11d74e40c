"""What a node knows about whom it can trust: handshakes, refused versions, clock skew.

- Handshakes (auth.py). The ones this node dials are counted by its `Peers`
  (`HandshakeStats`); the ones it answers and refuses are counted here, and every
  failure is logged, rate-limited (observability/throttle.py). `failure()` says why a
  node started with seeds cannot join: no handshake succeeded either way, and a seed
  failed to prove the secret or refused this node's proof (a different secret on one
  side). Seeds that never answered are not a trust failure.
- Versions (clock.py). The store refuses a received version its clock does not admit;
  the code that received it logs it here with whom it came from.
- Clock skew. Every membership message carries its sender's wall clock; the median
  difference to the alive peers is this node's skew, and more than half of
  `max_clock_skew_ms` is logged and shown (INFO, /metrics): past the whole bound, this
  node's writes would be refused by its peers, or theirs by it. Keeping clocks right is
  NTP's job; telling the operator is this module's.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Container

from geocache.clock import Clock
from geocache.cluster.host import ClusterHost
from geocache.cluster.peers import HandshakeStats
from geocache.observability.throttle import LogThrottle
from geocache.protocol.types import Error
from geocache.store.errors import VersionRefused

log = logging.getLogger("geocache.trust")


class Trust:
    def __init__(
        self, host: ClusterHost, clock: Clock, handshakes: HandshakeStats, node_id: str
    ) -> None:
        """`handshakes`: the dialing side's counts (the node's Peers keep them)."""
        self._host = host
        self._clock = clock
        self._node_id = node_id
        self.handshakes = handshakes
        # Seeds are fixed at start (CONFIG SET does not change them).
        self._seeded = bool(host.config.seed_list)
        self.refused = 0
        self._log = LogThrottle(log)
        # Whether a peer proved the secret to this node (after checking this node's proof).
        self._proven_here = False
        # Alive peer id -> its wall clock less this node's, as its last message said (ms).
        self._offsets: dict[str, int] = {}

    # -- handshakes --------------------------------------------------------------------

    def handshake_proven(self) -> None:
        """A peer proved the secret to this node (it had checked this node's proof first)."""
        self._proven_here = True

    def handshake_refused(self, client_addr: str, claimed_id: str, reason: str) -> None:
        """A peer's handshake failed here: counted and logged (rate-limited)."""
        self.refused += 1
        self._log.warning(
            "peer handshake refused",
            kind=f"handshake refused: {reason}",
            client=client_addr,
            claimed=claimed_id or "?",
            reason=reason,
        )

    def failure(self) -> str:
        """Why this node cannot join its seeds, if no handshake succeeded either way and
        a seed's proof or this node's failed; "" otherwise."""
        handshakes = self.handshakes
        if self._proven_here or handshakes.proven or not self._seeded:
            return ""
        if not handshakes.secret_failures:
            return ""
        return f"cannot prove the cluster secret to any seed ({handshakes.last_failure})"

    # -- versions ----------------------------------------------------------------------

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        """A received version the clock did not admit (the store counted it): logged,
        rate-limited; returns the error reply for its sender."""
        self._log.warning(
            "version refused",
            kind="version refused",
            peer=peer_id or "?",
            via=via,
            key=repr(key[:64]),
            version=exc.version,
            ahead_ms=exc.ahead_ms,
        )
        return Error(str(exc))

    # -- clock skew --------------------------------------------------------------------

    def peer_wall_ms(self, peer_id: str, wall_ms: int, alive: Container[str]) -> None:
        """A peer's wall clock as its membership message left it (GC.SWIM)."""
        if peer_id not in alive or peer_id == self._node_id:
            return
        self._offsets[peer_id] = wall_ms - self._clock.wall_ms()
        if self.clock_skewed():
            self._log.warning(
                "this node's wall clock differs from its peers'",
                kind="clock skew",
                skew_ms=self.clock_skew_ms(),
                max_clock_skew_ms=self._host.config.max_clock_skew_ms,
            )

    def keep_peers(self, alive: Container[str]) -> None:
        """Forget the clocks of peers that are no longer alive."""
        self._offsets = {n: ms for n, ms in self._offsets.items() if n in alive}

    def clock_skew_ms(self) -> int:
        """How far this node's wall clock is ahead of its alive peers' (the median; ms,
        negative when behind, 0 with no peer heard from). A message's one-way delay
        counts in: a few ms, far below what this is for."""
        if not self._offsets:
            return 0
        return -int(statistics.median(self._offsets.values()))

    def clock_skewed(self) -> bool:
        """Off by more than half the skew bound."""
        return abs(self.clock_skew_ms()) * 2 > self._host.config.max_clock_skew_ms

    def status(self) -> dict[str, int]:
        """Plain numbers for INFO and /metrics."""
        return {
            "peer_handshakes_proven": self.handshakes.proven,
            "peer_handshakes_failed": self.handshakes.failed,
            "peer_handshakes_refused": self.refused,
            "clock_skew_ms": self.clock_skew_ms(),
            "clock_skewed": int(self.clock_skewed()),
        }
