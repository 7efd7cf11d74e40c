"""SWIM membership on the simulated network: convergence, detection, no false positives,
partitions, leave, restart, regions, precedence, limits and the wire codec.

Every scenario runs on a ManualClock in SimNet, with messages encoded and decoded on the
way; nothing sleeps. Times below are simulated ms.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geocache.clock import ManualClock
from geocache.cluster import swim, swim_messages
from geocache.cluster.swim import (
    Ack,
    Member,
    MemberState,
    Ping,
    PingReq,
    Swim,
    SwimConfig,
    Sync,
    SyncReply,
    decode,
    encode,
    local_member,
)
from sim import net as simnet
from sim.net import Codec, Link, SimNet

ALIVE, SUSPECT, DEAD, LEFT = MemberState
REGIONS = ("eu", "us", "ap")
CFG = SwimConfig()
T = CFG.probe_interval_ms


class Cluster:
    """n Swim nodes on a SimNet; node i is `n<i>` at 10.0.<i>.1:7379, joined via node 0."""

    def __init__(self, n: int, seed: int, loss: float = 0.0, config: SwimConfig = CFG) -> None:
        self.clock = ManualClock()
        self.rng = random.Random(seed)
        link = Link(delay_ms=2, jitter_ms=4, drop=loss)
        self.net = SimNet(self.clock, random.Random(seed + 1), link, Codec(encode, decode))
        self.config = config
        self.nodes: dict[str, Swim] = {}
        # (time, observer, old, new) for every change any live node accepted.
        self.log: list[tuple[int, str, Member | None, Member]] = []
        for i in range(n):
            self.start(f"n{i}")

    @staticmethod
    def addr(node_id: str) -> str:
        return f"10.0.{node_id[1:]}.1:7379"

    def start(self, node_id: str) -> Swim:
        region = REGIONS[int(node_id[1:]) % len(REGIONS)]
        me = local_member(node_id, self.addr(node_id), region, self.clock)
        node = Swim(me, self.config, self.clock, random.Random(self.rng.random()))
        self.nodes[node_id] = node
        self.net.add(me.addr, node)
        self.net.send_all(me.addr, node.join([self.addr("n0")]))
        return node

    def crash(self, node_id: str) -> None:
        self.net.crash(self.addr(node_id))

    def up(self) -> list[str]:
        return [i for i in self.nodes if self.addr(i) not in self.net.crashed]

    def run(self, ms: int, chunk_ms: int = 50) -> None:
        for _ in range(ms // chunk_ms):
            self.net.run_for(chunk_ms)
            now = self.clock.mono_ms()
            for node_id in self.up():
                changes = self.nodes[node_id].drain_changes()
                self.log.extend((now, node_id, old, new) for old, new in changes)

    def run_until(self, done: object, limit_ms: int, chunk_ms: int = 50) -> int:
        """Run until `done()` holds; the simulated ms it took (fails past `limit_ms`)."""
        start = self.clock.mono_ms()
        while not done():  # type: ignore[operator]
            assert self.clock.mono_ms() - start < limit_ms, "condition not reached in time"
            self.run(chunk_ms, chunk_ms)
        return self.clock.mono_ms() - start

    def state_of(self, observer: str, node_id: str) -> MemberState | None:
        member = self.nodes[observer].member(node_id)
        return None if member is None else member.state

    def all_see(self, node_id: str, state: MemberState, among: list[str] | None = None) -> bool:
        observers = [o for o in (among or self.up()) if o != node_id]
        return all(self.state_of(o, node_id) is state for o in observers)

    def converged(self) -> bool:
        up = self.up()
        return all(
            [m.node_id for m in self.nodes[o].alive()] == sorted(up)
            and all(m.state is ALIVE for m in self.nodes[o].alive())
            for o in up
        )

    def deaths(self, of: str | None = None) -> list[tuple[int, str, Member | None, Member]]:
        return [e for e in self.log if e[3].state is DEAD and of in (None, e[3].node_id)]


# --- joining ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 20])
def test_join_through_one_seed_converges_to_all_alive(n: int) -> None:
    cluster = Cluster(n, seed=n)
    took = cluster.run_until(cluster.converged, limit_ms=10 * T)
    # Every node learned every other's id, address and region from one seed.
    for node in cluster.nodes.values():
        assert len(node.members()) == n
        assert all(m.incarnation > 0 for m in node.members())
    assert took <= 10 * T


def test_regions_are_visible_everywhere() -> None:
    cluster = Cluster(6, seed=3)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    for node in cluster.nodes.values():
        assert [m.node_id for m in node.alive(region="eu")] == ["n0", "n3"]
        assert [m.node_id for m in node.alive(region="us")] == ["n1", "n4"]
        assert node.alive(region="mars") == []
        assert {m.region for m in node.members()} == set(REGIONS)


def test_join_is_retried_until_a_seed_answers() -> None:
    cluster = Cluster(1, seed=4)
    cluster.crash("n0")  # the only seed is down when n1 starts
    cluster.start("n1")
    cluster.run(3 * CFG.join_retry_ms)
    assert cluster.nodes["n1"].alive() == [cluster.nodes["n1"].me]
    cluster.net.add(Cluster.addr("n0"), cluster.nodes["n0"])
    cluster.run_until(cluster.converged, limit_ms=2 * CFG.join_retry_ms + T)


# --- failure detection ------------------------------------------------------------------


@pytest.mark.parametrize(("n", "loss"), [(5, 0.0), (20, 0.0), (10, 0.1)])
def test_crashed_node_is_declared_dead_by_all_within_the_bound(n: int, loss: float) -> None:
    cluster = Cluster(n, seed=10 + n, loss=loss)
    cluster.run_until(cluster.converged, limit_ms=20 * T)
    cluster.run(5 * T)
    victim = f"n{n - 1}"
    crashed_at = cluster.clock.mono_ms()
    cluster.crash(victim)
    bound = CFG.detection_bound_ms(n)
    took = cluster.run_until(lambda: cluster.all_see(victim, DEAD), limit_ms=bound)
    assert took <= bound
    # Everyone who declared it dead did so after the crash, and nobody else died.
    assert {e[1] for e in cluster.deaths(victim)} == set(cluster.up())
    assert all(t >= crashed_at for t, *_ in cluster.deaths(victim))
    assert cluster.deaths() == cluster.deaths(victim)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_detection_bound_holds_for_any_seed_at_10_percent_loss(seed: int) -> None:
    cluster = Cluster(6, seed=seed, loss=0.1)
    cluster.run_until(cluster.converged, limit_ms=20 * T)
    cluster.crash("n5")
    bound = CFG.detection_bound_ms(6)
    assert cluster.run_until(lambda: cluster.all_see("n5", DEAD), limit_ms=bound) <= bound


def _false_deaths(n: int, seed: int, minutes: int, loss: float) -> tuple[int, int]:
    cluster = Cluster(n, seed=seed, loss=loss)
    cluster.run_until(cluster.converged, limit_ms=30 * T)
    cluster.run(minutes * 60_000, chunk_ms=1_000)
    refutations = sum(node.stats.refutations for node in cluster.nodes.values())
    return len(cluster.deaths()), refutations


def test_ten_percent_loss_for_ten_minutes_declares_no_healthy_node_dead() -> None:
    false_deaths, refutations = _false_deaths(n=10, seed=1, minutes=10, loss=0.1)
    assert false_deaths == 0
    # The loss did bite: probes failed, members were suspected, and they refuted.
    assert refutations > 10


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_ten_percent_loss_declares_no_healthy_node_dead_for_any_seed(seed: int) -> None:
    assert _false_deaths(n=5, seed=seed, minutes=3, loss=0.1)[0] == 0


def test_indirect_probes_keep_a_member_alive_across_a_broken_link() -> None:
    cluster = Cluster(5, seed=5)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    cluster.net.partition([Cluster.addr("n1")], [Cluster.addr("n2")])
    cluster.run(60_000, chunk_ms=1_000)
    assert cluster.nodes["n1"].stats.indirect_probes > 0
    assert [e for e in cluster.log if e[3].state is not ALIVE] == []


def test_reordering_and_jitter_change_nothing_that_matters() -> None:
    cluster = Cluster(8, seed=13)
    cluster.net.default_link = Link(delay_ms=5, jitter_ms=60, drop=0.02, reorder=0.2)
    cluster.run_until(cluster.converged, limit_ms=20 * T)
    cluster.run(60_000, chunk_ms=1_000)
    assert cluster.deaths() == []
    cluster.crash("n7")
    bound = CFG.detection_bound_ms(8)
    cluster.run_until(lambda: cluster.all_see("n7", DEAD), limit_ms=bound)
    assert cluster.net.stats["reordered"] > 0


# --- partitions, restarts, leaving ------------------------------------------------------


def test_partitioned_node_is_declared_dead_and_rejoins_after_the_heal() -> None:
    cluster = Cluster(5, seed=6)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    before = cluster.nodes["n0"].member("n4")
    assert before is not None
    cluster.net.isolate(Cluster.addr("n4"))
    bound = CFG.detection_bound_ms(5)
    cluster.run_until(lambda: cluster.all_see("n4", DEAD), limit_ms=bound)
    cluster.run_until(
        lambda: all(cluster.state_of("n4", o) is DEAD for o in cluster.nodes if o != "n4"),
        limit_ms=bound,
    )
    assert any(e[3].state is SUSPECT and e[3].node_id == "n4" for e in cluster.log)
    cluster.net.heal()
    # Periodic syncs to dead members (and n4's retries to its seed) find each other; the
    # refuted records then spread by gossip.
    cluster.run_until(cluster.converged, limit_ms=CFG.sync_interval_ms + 10 * T)
    after = cluster.nodes["n0"].member("n4")
    assert after is not None and after.incarnation > before.incarnation


def test_a_deaf_node_is_declared_dead_and_no_healthy_node_is() -> None:
    """n4 can send but hears nothing (a one-way partition): it suspects everyone and
    tells them so; they refute, and only n4 dies, for good, without flapping."""
    cluster = Cluster(5, seed=14)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    healthy = ["n0", "n1", "n2", "n3"]
    cluster.net.partition([Cluster.addr(o) for o in healthy], [Cluster.addr("n4")], True)
    cluster.run(2 * CFG.detection_bound_ms(5) + 2 * CFG.sync_interval_ms)
    assert cluster.all_see("n4", DEAD, healthy)
    assert {e[3].node_id for e in cluster.deaths() if e[1] in healthy} == {"n4"}
    assert len(cluster.deaths("n4")) == len(healthy)  # declared once each, never revived
    assert all(cluster.state_of(o, h) is ALIVE for o in healthy for h in healthy if o != h)


def test_restarted_node_rejoins_with_a_higher_incarnation() -> None:
    cluster = Cluster(5, seed=7)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    old = cluster.nodes["n2"].me
    cluster.crash("n2")
    cluster.run_until(lambda: cluster.all_see("n2", DEAD), limit_ms=CFG.detection_bound_ms(5))
    new = cluster.start("n2").me  # a new process: incarnation = wall-clock ms, now larger
    assert new.incarnation > old.incarnation
    cluster.run_until(cluster.converged, limit_ms=5 * T)
    for observer in cluster.up():
        seen = cluster.nodes[observer].member("n2")
        assert seen is not None and seen.state is ALIVE
        assert seen.incarnation >= new.incarnation and seen.addr == new.addr


def test_quick_restart_before_detection_shows_as_a_new_incarnation() -> None:
    cluster = Cluster(4, seed=8)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    cluster.run(T)
    cluster.log.clear()
    cluster.crash("n3")
    cluster.clock.advance(50)
    new = cluster.start("n3").me
    cluster.run(5 * T)
    assert cluster.converged()
    seen = [(o, old, m) for _, o, old, m in cluster.log if m.node_id == "n3" and m == new]
    assert {o for o, _, _ in seen} == {"n0", "n1", "n2"}
    assert all(old is not None and old.incarnation < new.incarnation for _, old, _ in seen)
    assert cluster.deaths() == []


def test_graceful_leave_is_seen_everywhere_quickly_and_the_node_is_not_probed() -> None:
    cluster = Cluster(6, seed=9)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    leaver = cluster.nodes["n3"]
    cluster.net.send_all(Cluster.addr("n3"), leaver.leave())
    assert leaver.me.state is LEFT
    others = [o for o in cluster.nodes if o != "n3"]
    took = cluster.run_until(lambda: cluster.all_see("n3", LEFT, others), limit_ms=T)
    assert took <= 2 * CFG.probe_timeout_ms
    assert leaver.tick() == []
    probes: list[object] = []
    cluster.net.on_deliver = lambda src, dst, msg: (
        probes.append(msg) if dst == Cluster.addr("n3") else None
    )
    cluster.run(CFG.sync_interval_ms * 3, chunk_ms=1_000)
    assert probes == []
    assert all(m.node_id != "n3" for o in others for m in cluster.nodes[o].alive())
    assert cluster.deaths() == []


def test_leave_spreads_by_gossip_when_the_direct_announcements_are_lost() -> None:
    cluster = Cluster(6, seed=11)
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    others = [o for o in cluster.nodes if o != "n3"]
    cluster.net.partition([Cluster.addr("n3")], [Cluster.addr(o) for o in others[1:]], True)
    cluster.net.send_all(Cluster.addr("n3"), cluster.nodes["n3"].leave())
    cluster.run_until(lambda: cluster.all_see("n3", LEFT, others), limit_ms=10 * T)


# --- the state machine, message by message ----------------------------------------------


def _node(node_id: str = "a", region: str = "eu") -> tuple[Swim, ManualClock]:
    clock = ManualClock()
    me = local_member(node_id, f"{node_id}.local:7379", region, clock)
    return Swim(me, CFG, clock, random.Random(0)), clock


def _member(node_id: str, state: MemberState, incarnation: int) -> Member:
    return Member(node_id, f"{node_id}.local:7379", "eu", state, incarnation)


@pytest.mark.parametrize(
    ("local", "incoming", "accepted"),
    [
        ((ALIVE, 5), (ALIVE, 6), True),
        ((ALIVE, 5), (ALIVE, 5), False),
        ((ALIVE, 5), (SUSPECT, 5), True),
        ((ALIVE, 5), (SUSPECT, 4), False),
        ((SUSPECT, 5), (ALIVE, 5), False),
        ((SUSPECT, 5), (ALIVE, 6), True),
        ((SUSPECT, 5), (DEAD, 5), True),
        ((DEAD, 5), (ALIVE, 5), False),
        ((DEAD, 5), (SUSPECT, 5), False),
        ((DEAD, 5), (ALIVE, 6), True),
        ((ALIVE, 7), (DEAD, 6), False),
        ((LEFT, 5), (DEAD, 5), False),
        ((LEFT, 5), (ALIVE, 6), True),
        ((DEAD, 5), (LEFT, 5), True),
    ],
)
def test_precedence(
    local: tuple[MemberState, int], incoming: tuple[MemberState, int], accepted: bool
) -> None:
    node, _ = _node()
    sender = _member("s", ALIVE, 1)
    node.receive(sender.addr, Ping(1, (sender, _member("x", ALIVE, 1))))
    node.receive(sender.addr, Ping(2, (sender, _member("x", *local))))
    assert node.member("x") == _member("x", *local)
    node.drain_changes()
    node.receive(sender.addr, Ping(3, (sender, _member("x", *incoming))))
    assert node.member("x") == _member("x", *(incoming if accepted else local))
    assert len(node.drain_changes()) == int(accepted)


def test_suspicion_about_me_is_refuted_in_the_reply() -> None:
    node, _ = _node()
    sender = _member("s", ALIVE, 1)
    me = node.me
    rumour = replace(me, state=SUSPECT)
    [send] = node.receive(sender.addr, Ping(9, (sender, rumour)))
    assert send.to_addr == sender.addr and isinstance(send.msg, Ack) and send.msg.seq == 9
    assert send.msg.updates[0] == replace(me, incarnation=me.incarnation + 1)
    assert node.me.incarnation == me.incarnation + 1 and node.stats.refutations == 1
    # A stale rumour (older incarnation) changes nothing.
    node.receive(sender.addr, Ping(10, (sender, replace(rumour, state=DEAD))))
    assert node.me.incarnation == me.incarnation + 1
    assert node.stats.id_conflicts == 0
    # Another process claiming our id (a misconfiguration) is refuted and counted.
    impostor = replace(me, addr="elsewhere:1", incarnation=me.incarnation + 5)
    node.receive(sender.addr, Ping(11, (sender, impostor)))
    assert node.me.incarnation == me.incarnation + 6 and node.stats.id_conflicts == 1


def test_a_suspect_is_told_so_and_its_ack_clears_the_suspicion() -> None:
    node, _ = _node()
    x = _member("x", ALIVE, 3)
    node.receive(x.addr, Ping(1, (x,)))
    node.receive("s.local:7379", Ping(2, (_member("s", ALIVE, 1), replace(x, state=SUSPECT))))
    sends = [s for _ in range(4) for s in _advance(node, T)]
    to_x = [s.msg for s in sends if s.to_addr == x.addr and isinstance(s.msg, Ping)]
    assert to_x and all(replace(x, state=SUSPECT) in m.updates for m in to_x)
    node.receive(x.addr, Ack(to_x[0].seq, (replace(x, incarnation=4),)))
    assert node.member("x") == replace(x, incarnation=4)


def _advance(node: Swim, ms: int) -> list[swim.Send]:
    clock = node._clock
    assert isinstance(clock, ManualClock)
    clock.advance(ms)
    return node.tick()


def test_ping_req_is_relayed_and_the_ack_forwarded() -> None:
    node, _ = _node()
    requester, target = _member("r", ALIVE, 1), _member("t", ALIVE, 1)
    node.receive(target.addr, Ping(1, (target,)))
    [ping] = node.receive(requester.addr, PingReq(77, "t", (requester,)))
    assert ping.to_addr == target.addr and isinstance(ping.msg, Ping)
    [ack] = node.receive(target.addr, Ack(ping.msg.seq, (target,)))
    assert ack.to_addr == requester.addr and isinstance(ack.msg, Ack) and ack.msg.seq == 77
    assert node.receive(target.addr, Ack(ping.msg.seq, (target,))) == []  # relayed once
    assert node.receive(requester.addr, PingReq(78, "nobody", (requester,))) == []


def test_replies_go_to_the_advertised_address_not_the_transport_one() -> None:
    node, _ = _node()
    sender = _member("s", ALIVE, 1)
    [send] = node.receive("127.0.0.1:53211", Ping(1, (sender,)))
    assert send.to_addr == sender.addr


def test_every_message_starts_with_the_senders_record() -> None:
    cluster = Cluster(4, seed=12)
    first: list[tuple[str, Member]] = []
    cluster.net.on_deliver = lambda src, dst, msg: first.append(
        (src, swim_messages.records(msg)[0])
    )
    cluster.run_until(cluster.converged, limit_ms=10 * T)
    cluster.run(3 * T)
    assert first and all(Cluster.addr(m.node_id) == src for src, m in first)


def test_sync_downgrades_a_remote_death_to_a_suspicion() -> None:
    node, _ = _node()
    sender, x = _member("s", ALIVE, 1), _member("x", ALIVE, 3)
    node.receive(x.addr, Ping(1, (x,)))
    [reply] = node.receive(sender.addr, Sync((sender, replace(x, state=DEAD))))
    assert isinstance(reply.msg, SyncReply) and reply.msg.members[0] == node.me
    assert {m.node_id for m in reply.msg.members} == {"a", "s", "x"}
    assert node.member("x") == replace(x, state=SUSPECT)
    node.receive(sender.addr, Ping(2, (sender, _member("ghost", DEAD, 1))))
    assert node.member("ghost") is None  # the death of a stranger is not remembered


# --- bounds -----------------------------------------------------------------------------


def test_member_table_is_bounded_and_dead_members_are_forgotten() -> None:
    config = SwimConfig(max_members=16, dead_retention_ms=60_000)
    clock = ManualClock()
    node = Swim(local_member("a", "a:1", "eu", clock), config, clock, random.Random(1))
    sender = _member("s", ALIVE, 1)
    junk = tuple(_member(f"j{i}", ALIVE, 1) for i in range(50))
    node.receive(sender.addr, Sync((sender, *junk)))
    assert len(node.members()) == 16 and node.stats.rejected_members == 50 - 14
    # Room is made by forgetting the dead first.
    node.receive(sender.addr, Ping(4, (sender, replace(junk[0], state=DEAD))))
    node.receive(sender.addr, Ping(5, (sender, _member("late", ALIVE, 1))))
    assert node.member("late") is not None and node.member("j0") is None
    node.receive(sender.addr, Ping(6, (sender, replace(junk[1], state=DEAD, incarnation=2))))
    clock.advance(config.dead_retention_ms)
    node.tick()
    assert node.member("j1") is None and len(node.members()) == 15
    assert len(node.drain_changes()) <= swim.MAX_CHANGES


def test_piggyback_is_bounded_per_message_and_updates_retire() -> None:
    node, _ = _node()
    sender = _member("s", ALIVE, 1)
    node.receive(sender.addr, Sync((sender, *(_member(f"m{i}", ALIVE, 1) for i in range(40)))))
    sizes = []
    for seq in range(200):
        [ack] = node.receive(sender.addr, Ping(seq, (sender,)))
        assert isinstance(ack.msg, Ack)
        sizes.append(len(ack.msg.updates))
    assert max(sizes) <= CFG.max_piggyback + 1
    assert sizes[-1] == 1  # every update was sent its share of times, then retired


def test_config_is_validated_and_suspicion_grows_with_log_n() -> None:
    with pytest.raises(ValueError):
        SwimConfig(probe_timeout_ms=1_000, probe_interval_ms=1_000)
    with pytest.raises(ValueError):
        SwimConfig(max_members=100_000)
    assert CFG.suspicion_timeout_ms(2) == CFG.suspicion_timeout_ms(10) == 4 * T
    assert CFG.suspicion_timeout_ms(100) == 8 * T
    assert CFG.detection_bound_ms(5) == 10 * T + 4 * T
    with pytest.raises(ValueError):
        Swim(_member("a", SUSPECT, 1), CFG, ManualClock(), random.Random(0))
    with pytest.raises(ValueError):
        _node()[0].join(["no-port"])


# --- the wire ---------------------------------------------------------------------------

SENDER = Member("eu-1", "10.0.0.5:7379", "eu", ALIVE, 1_700_000_000_000)
MESSAGES = [
    Ping(1, (SENDER,)),
    Ack(2**40, (SENDER, Member("us-1", "[::1]:7379", "us", SUSPECT, 3))),
    PingReq(3, "us-1", (SENDER, Member("ap-1", "host.example:1", "ap", DEAD, 0))),
    Sync((SENDER, Member("x", "::1:7380", "eu", LEFT, 9))),
    SyncReply((replace(SENDER, state=LEFT),)),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trips(msg: swim.Message) -> None:
    assert decode(encode(msg)) == msg


M = ["n", "h:1", "eu", "a", 1]
JUNK = [
    b"",
    b"\xff\xfe",
    b"null",
    b"[]",
    b'"ping"',
    b"{}",
    b"[" * 100_000,
    b"{" * 100_000,
    b"x" * (swim_messages.MAX_MESSAGE_BYTES + 1),
    json.dumps({"v": 2, "t": "ping", "seq": 1, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "pong", "seq": 1, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": ["ping"], "seq": 1, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [M], "x": 1}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": True, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": -1, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1.0, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 2**64, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": []}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": M}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [M, M]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[*M[:3], "s", 1]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[*M[:3], "z", 1]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[*M[:4], 2**62]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [["", *M[1:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [["a b", *M[1:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [["é", *M[1:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [["n" * 129, *M[1:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[M[0], "h", *M[2:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[M[0], "h:0", *M[2:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[M[0], "h:65536", *M[2:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [[M[0], ":80", *M[2:]]]}).encode(),
    json.dumps({"v": 1, "t": "ping", "seq": 1, "u": [M[:4]]}).encode(),
    json.dumps({"v": 1, "t": "pingreq", "seq": 1, "target": 5, "u": [M]}).encode(),
    json.dumps({"v": 1, "t": "sync", "m": [[f"n{i}", *M[1:]] for i in range(1025)]}).encode(),
    json.dumps(
        {"v": 1, "t": "ack", "seq": 1, "u": [[f"n{i}", *M[1:]] for i in range(65)]}
    ).encode(),
]


@pytest.mark.parametrize("data", JUNK, ids=range(len(JUNK)))
def test_decode_rejects_junk(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decode_of_any_bytes_returns_a_message_or_raises_value_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except ValueError:
        return
    assert decode(encode(msg)) == msg


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


@settings(max_examples=150)
@given(st.sampled_from(["ping", "ack", "pingreq", "sync", "syncreply"]), _json, _json)
def test_decode_of_any_json_shape_returns_a_message_or_raises_value_error(
    kind: str, a: object, b: object
) -> None:
    for body in ({"v": 1, "t": kind, "seq": a, "u": b}, {"v": 1, "t": kind, "m": a}, a):
        try:
            msg = decode(json.dumps(body).encode())
        except ValueError:
            continue
        assert decode(encode(msg)) == msg


# --- layering ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [swim, swim_messages, simnet])
def test_pure_layers_do_no_io(module: object) -> None:
    # The .py beside the module's file: a compiled module's __file__ is its .so.
    name = module.__name__.rpartition(".")[2]  # type: ignore[attr-defined]
    source = (Path(module.__file__).parent / f"{name}.py").read_text()  # type: ignore[attr-defined]
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "selectors", "threading", "time"}


# --- the simulated network itself -------------------------------------------------------


class Recorder:
    """An endpoint that records what it receives and sends nothing by itself."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str, object]] = []
        self.clock: ManualClock | None = None

    def tick(self) -> list[swim.Send]:
        return []

    def receive(self, from_addr: str, msg: object) -> list[swim.Send]:
        assert self.clock is not None
        self.got.append((self.clock.mono_ms(), from_addr, msg))
        return []

    def next_deadline_ms(self) -> int | None:
        return None


def _recorders(link: Link, seed: int = 0) -> tuple[SimNet, Recorder, Recorder]:
    clock = ManualClock()
    net = SimNet(clock, random.Random(seed), link)
    a, b = Recorder(), Recorder()
    a.clock = b.clock = clock
    net.add("a:1", a)
    net.add("b:1", b)
    return net, a, b


def _ping(seq: int) -> swim.Send:
    return swim.Send("b:1", Ping(seq, (_member("a", ALIVE, 1),)))


def test_simnet_delivers_after_the_link_delay_in_order_without_jitter() -> None:
    net, _, b = _recorders(Link(delay_ms=30))
    start = net.clock.mono_ms()
    net.send_all("a:1", [_ping(i) for i in range(5)])
    net.run_for(29)
    assert b.got == []
    net.run_for(1)
    assert [(t - start, src) for t, src, _ in b.got] == [(30, "a:1")] * 5
    assert [m.seq for _, _, m in b.got] == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]


def test_simnet_jitter_reorders_and_a_seed_replays_exactly() -> None:
    def run(seed: int) -> list[int]:
        net, _, b = _recorders(Link(delay_ms=5, jitter_ms=50, reorder=0.3), seed)
        for i in range(50):
            net.send_all("a:1", [_ping(i)])
            net.run_for(2)
        net.run_for(1_000)
        return [m.seq for _, _, m in b.got]  # type: ignore[attr-defined]

    assert run(3) == run(3)
    assert sorted(run(3)) == list(range(50)) and run(3) != list(range(50))


def test_simnet_partitions_one_way_and_both_ways_then_heal() -> None:
    net, a, b = _recorders(Link())
    net.partition(["a:1"], ["b:1"], one_way=True)
    net.send_all("a:1", [_ping(1)])
    net.send_all("b:1", [swim.Send("a:1", Ping(2, (_member("b", ALIVE, 1),)))])
    net.run_for(10)
    assert (len(a.got), len(b.got)) == (1, 0)
    net.heal()
    net.isolate("b:1")
    net.send_all("b:1", [swim.Send("a:1", Ping(3, (_member("b", ALIVE, 1),)))])
    net.run_for(10)
    assert len(a.got) == 1 and net.stats["dropped_partition"] == 2
    net.heal()
    net.crash("b:1")
    net.send_all("a:1", [_ping(4)])
    net.run_for(10)
    assert b.got == [] and net.stats["dropped_down"] == 1


def test_simnet_drops_the_configured_fraction() -> None:
    net, _, b = _recorders(Link(drop=0.25), seed=5)
    net.send_all("a:1", [_ping(i) for i in range(4_000)])
    net.run_for(10)
    assert 2_850 < len(b.got) < 3_150
