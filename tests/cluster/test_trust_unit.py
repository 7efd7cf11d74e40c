"""cluster/trust.py alone: why a node cannot join, and its clock skew, on a manual clock."""

from __future__ import annotations

import logging

import pytest

from geocache.clock import ManualClock
from geocache.cluster.peers import HandshakeStats
from geocache.cluster.trust import Trust
from geocache.config import NodeConfig
from geocache.fill import Filler

NOW_MS = 1_700_000_000_000


class Host:
    def __init__(self, **settings: object) -> None:
        self.config = NodeConfig(cluster_secret="s", **settings)  # type: ignore[arg-type]
        self.origin: Filler | None = None


def test_a_trust_failure_needs_seeds_a_failed_proof_and_no_success() -> None:
    stats = HandshakeStats()
    trust = Trust(Host(seeds="a:1"), ManualClock(NOW_MS), stats, "me")
    assert trust.failure() == ""  # nobody answered yet: not a trust failure
    stats.failed, stats.last_failure = 1, "a:1 is n2, not n3 (relayed?)"
    assert trust.failure() == ""  # someone unexpected: not the secret
    stats.secret_failures, stats.last_failure = 1, "a:1 (n1) failed to prove the cluster secret"
    assert "cannot prove the cluster secret to any seed" in trust.failure()
    assert "failed to prove" in trust.failure()
    trust.handshake_proven()  # a peer proved it to this node: the secret is right
    assert trust.failure() == ""
    alone = Trust(Host(), ManualClock(NOW_MS), HandshakeStats(secret_failures=3), "me")
    assert alone.failure() == ""  # no seeds: nothing to join


def test_skew_is_the_median_over_alive_peers_and_reported_past_half_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(NOW_MS)
    trust = Trust(Host(max_clock_skew_ms=10_000), clock, HandshakeStats(), "me")
    alive = {"me", "a", "b", "c"}
    trust.peer_wall_ms("a", NOW_MS - 1_000, alive)
    trust.peer_wall_ms("stranger", NOW_MS - 99_000, alive)  # not a member: ignored
    assert trust.clock_skew_ms() == 1_000 and not trust.clock_skewed()
    with caplog.at_level(logging.WARNING, logger="geocache.trust"):
        trust.peer_wall_ms("b", NOW_MS - 6_000, alive)
        trust.peer_wall_ms("c", NOW_MS - 7_000, alive)
    assert trust.clock_skew_ms() == 6_000 and trust.clock_skewed()  # ahead of them
    assert "wall clock differs" in caplog.text
    assert trust.status()["clock_skewed"] == 1
    trust.keep_peers({"me", "a"})  # b and c are gone
    assert trust.clock_skew_ms() == 1_000 and not trust.clock_skewed()
