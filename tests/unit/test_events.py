"""The node's event ring: membership changes, resyncs and the breaker as timeline events."""

from __future__ import annotations

from geocache.clock import ManualClock
from geocache.cluster.swim_messages import Member, MemberState
from geocache.observability.events import NO_EVENTS, EventLog

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def member(state: MemberState, incarnation: int = 1, node_id: str = "n2") -> Member:
    return Member(node_id, "127.0.0.1:2", "eu", state, incarnation)


def kinds(log: EventLog) -> list[str]:
    return [e.kind for e in log.since()]


def test_membership_changes_become_events() -> None:
    log = EventLog(ManualClock(), "n1")
    log.membership([(None, member(A))])
    log.membership([(member(A), member(S))])
    log.membership([(member(S), member(D))])
    log.membership([(member(D), member(A, 2))])
    log.membership([(member(A, 2), member(S, 2)), (member(S, 2), member(A, 3))])
    log.membership([(member(A, 3), member(A, 4))])  # restarted without being seen dead
    log.membership([(member(A, 4), member(L, 5))])
    log.membership([(member(S), member(S, 2))])  # still suspect: nothing new for a person
    assert kinds(log) == [
        "joined", "suspected", "dead", "rejoined", "suspected", "recovered", "rejoined", "left"
    ]  # fmt: skip
    event = log.since()[2]
    assert (event.subject, event.region, event.reporter) == ("n2", "eu", "n1")
    assert event.at_ms == ManualClock().wall_ms()


def test_a_resync_is_done_when_every_member_asked_was_pulled_from() -> None:
    log = EventLog(ManualClock(), "n1")
    log.resync_started("us", ["u1", "u2"])
    log.repair_done("eu-peer")  # an in-region pass: not part of it
    log.repair_done("u1")
    assert kinds(log) == ["resync_started"]
    log.repair_done("u2")
    assert kinds(log) == ["resync_started", "resync_done"]
    log.repair_done("u2")  # a later pass with the same peer: no second "done"
    assert kinds(log) == ["resync_started", "resync_done"]
    assert log.since()[-1].subject == "us"


def test_the_ring_is_bounded_and_read_after_a_sequence_number() -> None:
    clock = ManualClock()
    log = EventLog(clock, "n1", capacity=3)
    for i in range(5):
        clock.advance(1)
        log.record("breaker_opened", "origin", detail=f"failure {i}")
    assert [e.seq for e in log.since()] == [3, 4, 5] and log.last_seq == 5
    assert [e.seq for e in log.since(4)] == [5]
    assert [e.seq for e in log.since(0, limit=2)] == [4, 5]
    assert log.since(5) == []
    assert log.since()[0].as_dict()["detail"] == "failure 2"


def test_the_null_sink_takes_anything() -> None:
    NO_EVENTS.record("breaker_opened", "origin")
