"""SWIM membership: a sans-IO failure detector and gossip state machine.

No I/O happens here. The driver feeds messages in with `receive()`, calls `tick()` at
least every few tens of ms (or sleeps until `next_deadline_ms()`), and carries the
`Send`s those calls return (encoded by `swim_messages.encode`) to their addresses.

Theory of operation (Das, Gupta, Motivala: "SWIM", 2002; suspicion as in HashiCorp
memberlist):

- Probing. Each `probe_interval_ms` a node pings one member, in a randomized round-robin
  order (shuffled once per round), so every member is probed by every node at least once
  in 2n - 1 intervals. No ack within `probe_timeout_ms` (for a member of another
  region, a timeout from the round trip measured to it: `set_region_rtt`, timing.py):
  `indirect_probes` random ALIVE members are asked to ping it for us (`PingReq`) and
  relay the ack. No ack by the end of the interval: the member becomes SUSPECT (unless
  it has meanwhile come back with a higher incarnation: a failed probe only speaks
  about the incarnation it probed).
- Suspicion. A SUSPECT member is declared DEAD by each node whose own suspicion timer
  (`suspicion_timeout_ms(n)`, growing with log10 of the cluster size) runs out, unless
  it refutes first: a node that hears it is SUSPECT (or DEAD) bumps its incarnation and
  gossips itself ALIVE. To give it that chance, every message to a member we suspect
  carries our suspicion, and up to `indirect_probes` suspects are pinged each interval
  besides the round-robin target, so a live suspect's ack carries the refutation back.
- Precedence. Records about one node compare by (incarnation, state rank) with
  ALIVE < SUSPECT < DEAD < LEFT: a higher incarnation always wins; for equal ones the
  graver state wins. A full-state exchange downgrades DEAD to SUSPECT when we hold the
  member alive, so stale views (a healed partition) cost a suspicion, not a death.
- Dissemination. Every accepted change is queued and piggybacked on the next messages,
  freshest first, `max_piggyback` per message, each about `retransmit_mult * log10(n+1)`
  times. Every message starts with the sender's own record, so peers learn id <-> addr
  from any message. A full-state `Sync` goes to the seeds on join (retried every
  `join_retry_ms` while no peer is known), to one random live member 1, 2, 4...
  intervals after joining and every `sync_interval_ms` from then on, and at the same
  times to one DEAD member or silent seed (this heals partitions).
- Rejoin and leave. `local_member()` starts a node's incarnation at wall-clock ms, so a
  restarted process outranks its old self without persisted state. `leave()` announces
  LEFT with a higher incarnation; LEFT members are neither probed nor suspected.

Driver contract: deliver each `Send` best effort and independently; on any error drop it
(never retry, never queue without bound: SWIM owns loss, and a stale probe is worse than
a lost one). Replies travel as separate messages to the sender's advertised address, so
a transport's own reply carries nothing. Drop messages `decode` rejects. Call from one
thread (the node's event loop); every call is O(members) at most.

Bounded memory: at most `max_members` records (DEAD/LEFT ones are forgotten after
`dead_retention_ms`, or sooner when room is needed; beyond that, new ids are refused),
one queued update per member, at most MAX_FORWARDS relayed probes, MAX_CHANGES changes
awaiting `drain_changes()`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, replace

from geocache.clock import Clock
from geocache.cluster.swim_messages import (
    MAX_INCARNATION,
    MAX_SEQ,
    Ack,
    Member,
    MemberState,
    Message,
    Ping,
    PingReq,
    Send,
    SwimConfig,
    Sync,
    SyncReply,
    check_addr,
    decode,
    encode,
    member_in,
    records,
)
from geocache.cluster.timing import probe_timeout_ms

__all__ = [
    "Ack",
    "Change",
    "Member",
    "MemberState",
    "Message",
    "Ping",
    "PingReq",
    "Send",
    "Swim",
    "SwimConfig",
    "SwimStats",
    "Sync",
    "SyncReply",
    "decode",
    "encode",
    "local_member",
]

ALIVE, SUSPECT, DEAD, LEFT = MemberState
_LIVE = (ALIVE, SUSPECT)
# 256 relayed probes: each lives one probe interval; a node is asked for about k of them
# per interval on average, so 256 only fills under a flood, which then drops the oldest.
MAX_FORWARDS = 256
# 4096 undrained changes: a whole 1024-member cluster dying and coming back twice.
MAX_CHANGES = 4096
MAX_SEEDS = 64  # seeds name a few nodes per region; more is a mistake, not a cluster

Change = tuple[Member | None, Member]


@dataclass(slots=True)
class SwimStats:
    """Plain counters, read by the metrics exporter."""

    probes: int = 0
    indirect_probes: int = 0
    probe_failures: int = 0
    suspicions: int = 0
    deaths: int = 0
    refutations: int = 0
    rejected_members: int = 0
    dropped_changes: int = 0
    id_conflicts: int = 0  # another address claims our node id: a misconfiguration


@dataclass(slots=True)
class _Probe:
    target_id: str
    incarnation: int  # the target's when probed: a failure says nothing about a newer one
    seq: int
    start_ms: int
    end_ms: int
    timeout_ms: int  # the direct answer's: longer toward a far region
    indirect_sent: bool = False


def local_member(node_id: str, addr: str, region: str, clock: Clock) -> Member:
    """This node's first record: ALIVE, incarnation = wall-clock ms (beats any restart)."""
    return Member(node_id, addr, region, ALIVE, clock.wall_ms())


class Swim:
    """One node's view of the cluster; sans-IO (messages in, `Send`s out)."""

    def __init__(self, me: Member, config: SwimConfig, clock: Clock, rng: random.Random) -> None:
        raw = [me.node_id, me.addr, me.region, me.state.value, me.incarnation]
        if member_in(raw) != me or me.state is not ALIVE:
            raise ValueError("a node starts ALIVE")
        self._me = me
        self._cfg = config
        self._clock = clock
        self._rng = rng
        self._members: dict[str, Member] = {me.node_id: me}
        self._since: dict[str, int] = {}  # node id -> mono ms it became DEAD or LEFT
        self._suspect_until: dict[str, int] = {}
        self._queue: dict[str, tuple[Member, int]] = {}  # node id -> (update, times sent)
        self._changes: deque[Change] = deque(maxlen=MAX_CHANGES)
        self._forwards: dict[int, tuple[str, int, int]] = {}  # seq -> (addr, seq, expiry)
        self._probe: _Probe | None = None
        self._probe_order: list[str] = []
        self._seeds: tuple[str, ...] = ()
        self._rtt_ms: dict[str, float] = {}  # region -> measured round trip (ms)
        self._seq = rng.getrandbits(31)
        self._left = False
        self._live_count = 0  # peers (not us) ALIVE or SUSPECT: asked on every deadline
        self.stats = SwimStats()
        now = clock.mono_ms()
        self._next_probe_ms = now + rng.randrange(config.probe_interval_ms)
        self._next_sync_ms = now + rng.randrange(1, config.sync_interval_ms + 1)
        self._next_join_ms = now + config.join_retry_ms
        self._sync_gap_ms = config.sync_interval_ms

    # --- queries ----------------------------------------------------------------------

    @property
    def me(self) -> Member:
        return self._me

    def member(self, node_id: str) -> Member | None:
        return self._members.get(node_id)

    def members(self) -> list[Member]:
        """Every record held (this node's included, DEAD and LEFT too), by node id."""
        return sorted(self._members.values(), key=lambda m: m.node_id)

    def alive(self, region: str | None = None) -> list[Member]:
        """Members not declared dead (ALIVE or SUSPECT, as SWIM counts them), by node id."""
        return [m for m in self.members() if m.state in _LIVE and region in (None, m.region)]

    def drain_changes(self) -> list[Change]:
        """Every accepted (old, new) record change about other nodes since the last call.

        `old` is None for a newly learned member. Incarnation-only changes are included:
        ALIVE at a higher incarnation means the member restarted or refuted.
        """
        changes = list(self._changes)
        self._changes.clear()
        return changes

    def next_deadline_ms(self) -> int | None:
        """The monotonic ms at which `tick()` next has work; None after `leave()`."""
        if self._left:
            return None
        due = [self._next_probe_ms, self._next_sync_ms, *self._suspect_until.values()]
        if self._probe is not None:
            p = self._probe
            due.append(p.end_ms if p.indirect_sent else p.start_ms + p.timeout_ms)
        if self._seeds and not self._live_count:
            due.append(self._next_join_ms)
        return min(due)

    # --- inputs -----------------------------------------------------------------------

    def join(self, seed_addrs: list[str]) -> list[Send]:
        """Full-state `Sync` to each seed (our own address skipped); retried by `tick()`."""
        seeds = [check_addr(a) for a in seed_addrs if a != self._me.addr]
        self._seeds = tuple(dict.fromkeys(seeds))[:MAX_SEEDS]
        now = self._clock.mono_ms()
        self._next_join_ms = now + self._cfg.join_retry_ms
        # Nodes often start together, and a seed answers with only the members it knew
        # then: pull the full state again after 1, 2, 4... probe intervals, from whoever
        # we know, until the gap reaches sync_interval_ms.
        self._sync_gap_ms = self._cfg.probe_interval_ms
        self._next_sync_ms = now + self._sync_gap_ms
        return self._sync_to(self._seeds)

    def update_seeds(self, seed_addrs: list[str]) -> list[Send]:
        """The seeds now (names resolved again, nodes found on the network): they replace
        the old list as the addresses retried while silent, and the new ones that no
        known member has get a full-state `Sync` at once."""
        seeds = tuple(dict.fromkeys(check_addr(a) for a in seed_addrs if a != self._me.addr))
        known = {m.addr for m in self._members.values()}
        fresh = [a for a in seeds[:MAX_SEEDS] if a not in self._seeds and a not in known]
        self._seeds = seeds[:MAX_SEEDS]
        return self._sync_to(fresh) if fresh and not self._left else []

    def set_region_rtt(self, region: str, rtt_ms: float | None) -> None:
        """The round trip measured to `region` (None: unknown); probes of its members
        wait for a timeout made from it."""
        if rtt_ms is None:
            self._rtt_ms.pop(region, None)
        else:
            self._rtt_ms[region] = rtt_ms

    def probe_timeout_ms(self, member: Member) -> int:
        """How long a direct probe of `member` waits for its ack."""
        far = member.region != self._me.region
        return probe_timeout_ms(self._cfg, self._rtt_ms.get(member.region) if far else None)

    def leave(self) -> list[Send]:
        """Announce LEFT (one incarnation up) to every live peer; probing stops."""
        if self._left:
            return []
        self._left = True
        self._probe = None
        incarnation = min(self._me.incarnation + 1, MAX_INCARNATION)
        self._set_me(replace(self._me, state=LEFT, incarnation=incarnation))
        return [self._ping(m) for m in self._live_peers()]

    def tick(self) -> list[Send]:
        """Run whatever is due: suspicion timeouts, probes, syncs, housekeeping."""
        if self._left:
            return []
        now = self._clock.mono_ms()
        out: list[Send] = []
        self._expire(now)
        self._probe_step(now, out)
        self._sync_step(now, out)
        return out

    def receive(self, from_addr: str, msg: Message) -> list[Send]:
        """Handle one decoded message. Replies go to the sender's advertised address
        (its first record), not to `from_addr`, which is the transport's view."""
        recs = records(msg)
        sender = recs[0]
        if self._left:
            reply = Ack(msg.seq, (self._me,)) if isinstance(msg, Ping) else None
            return [Send(sender.addr, reply)] if reply is not None else []
        now = self._clock.mono_ms()
        full_state = isinstance(msg, Sync | SyncReply)
        for record in recs:
            self._merge(record, now, full_state)
        if sender.state is LEFT or sender.node_id == self._me.node_id:
            return []
        return _HANDLERS[type(msg)](self, msg, sender, now)

    # --- message handlers -------------------------------------------------------------

    def _on_ping(self, msg: Message, sender: Member, now: int) -> list[Send]:
        assert isinstance(msg, Ping)
        return [Send(sender.addr, Ack(msg.seq, self._updates(sender.node_id)))]

    def _on_ack(self, msg: Message, sender: Member, now: int) -> list[Send]:
        assert isinstance(msg, Ack)
        if self._probe is not None and msg.seq == self._probe.seq:
            self._probe = None  # answered, directly or relayed: the target is alive
            return []
        relay = self._forwards.pop(msg.seq, None)
        if relay is None or relay[2] < now:
            return []  # a late or unknown ack: its records were all it had to give
        return [Send(relay[0], Ack(relay[1], self._updates(None)))]

    def _on_ping_req(self, msg: Message, sender: Member, now: int) -> list[Send]:
        assert isinstance(msg, PingReq)
        if msg.target_id == self._me.node_id:
            return [Send(sender.addr, Ack(msg.seq, self._updates(sender.node_id)))]
        target = self._members.get(msg.target_id)
        if target is None or target.state is LEFT:
            return []
        seq = self._next_seq()
        if len(self._forwards) >= MAX_FORWARDS:
            del self._forwards[next(iter(self._forwards))]  # oldest first
        self._forwards[seq] = (sender.addr, msg.seq, now + self._cfg.probe_interval_ms)
        return [Send(target.addr, Ping(seq, self._updates(target.node_id)))]

    def _on_sync(self, msg: Message, sender: Member, now: int) -> list[Send]:
        return [Send(sender.addr, SyncReply(self._full_state()))]

    def _on_sync_reply(self, msg: Message, sender: Member, now: int) -> list[Send]:
        return []

    # --- state changes ----------------------------------------------------------------

    def _merge(self, record: Member, now: int, full_state: bool) -> None:
        if record.node_id == self._me.node_id:
            self._refute(record)
            return
        local = self._members.get(record.node_id)
        if local is None:
            # A death or leave of a member we never knew changes nothing we act on.
            if record.state not in _LIVE or not self._make_room():
                return
        else:
            if full_state and record.state is DEAD and local.state in _LIVE:
                record = replace(record, state=SUSPECT)
            if not record.overrides(local):
                return
        self._apply(record, now)

    def _apply(self, new: Member, now: int) -> None:
        old = self._members.get(new.node_id)
        self._members[new.node_id] = new
        self._live_count += (new.state in _LIVE) - (old is not None and old.state in _LIVE)
        self._queue[new.node_id] = (new, 0)
        self._suspect_until.pop(new.node_id, None)
        self._since.pop(new.node_id, None)
        if new.state is SUSPECT:
            timeout = self._cfg.suspicion_timeout_ms(self._live_count + 1)
            self._suspect_until[new.node_id] = now + timeout
        elif new.state not in _LIVE:
            self._since[new.node_id] = now
        if len(self._changes) == MAX_CHANGES:
            self.stats.dropped_changes += 1
        self._changes.append((old, new))

    def _refute(self, record: Member) -> None:
        """Someone holds a record about us that outranks ours: outrank it in turn."""
        if record.overrides(self._me):
            self.stats.id_conflicts += record.addr != self._me.addr
            incarnation = min(record.incarnation + 1, MAX_INCARNATION)
            self._set_me(replace(self._me, incarnation=incarnation))
            self.stats.refutations += 1

    def _set_me(self, me: Member) -> None:
        self._me = me
        self._members[me.node_id] = me
        self._queue[me.node_id] = (me, 0)

    def _make_room(self) -> bool:
        if len(self._members) < self._cfg.max_members:
            return True
        if not self._since:
            self.stats.rejected_members += 1
            return False
        self._forget(min(self._since, key=self._since.__getitem__))
        return True

    def _forget(self, node_id: str) -> None:
        del self._members[node_id]
        self._since.pop(node_id, None)
        self._queue.pop(node_id, None)

    def _expire(self, now: int) -> None:
        for node_id, until in list(self._suspect_until.items()):
            if until <= now:
                self._apply(replace(self._members[node_id], state=DEAD), now)
                self.stats.deaths += 1
        horizon = now - self._cfg.dead_retention_ms
        for node_id in [n for n, since in self._since.items() if since <= horizon]:
            self._forget(node_id)
        for seq in [s for s, relay in self._forwards.items() if relay[2] < now]:
            del self._forwards[seq]

    # --- probing ----------------------------------------------------------------------

    def _probe_step(self, now: int, out: list[Send]) -> None:
        cfg, p = self._cfg, self._probe
        if p is not None:
            if not p.indirect_sent and now >= p.start_ms + p.timeout_ms:
                # A late tick still gives the indirect path its full share of the interval.
                p.end_ms = max(p.end_ms, now + cfg.probe_interval_ms - p.timeout_ms)
                p.indirect_sent = True
                out.extend(self._indirect(p))
            if now < p.end_ms:
                return
            self._probe = None
            self._suspect(p, now)
        if now < self._next_probe_ms:
            return
        self._next_probe_ms += cfg.probe_interval_ms
        if self._next_probe_ms <= now:  # fell a whole interval behind: do not burst
            self._next_probe_ms = now + cfg.probe_interval_ms
        target = self._next_target()
        if target is not None:
            self.stats.probes += 1
            send = self._ping(target)
            assert isinstance(send.msg, Ping)
            end_ms = now + cfg.probe_interval_ms
            timeout_ms = self.probe_timeout_ms(target)
            self._probe = _Probe(
                target.node_id, target.incarnation, send.msg.seq, now, end_ms, timeout_ms
            )
            out.append(send)
        out.extend(self._reprobe_suspects(target))

    def _next_target(self) -> Member | None:
        while True:
            if not self._probe_order:
                self._probe_order = [m.node_id for m in self._live_peers()]
                if not self._probe_order:
                    return None
                self._rng.shuffle(self._probe_order)
            member = self._members.get(self._probe_order.pop())
            if member is not None and member.state in _LIVE:
                return member

    def _indirect(self, p: _Probe) -> list[Send]:
        helpers = [m for m in self._live_peers() if m.state is ALIVE and m.node_id != p.target_id]
        picked = self._rng.sample(helpers, min(self._cfg.indirect_probes, len(helpers)))
        self.stats.indirect_probes += len(picked)
        return [Send(h.addr, PingReq(p.seq, p.target_id, self._updates(h.node_id))) for h in picked]

    def _suspect(self, p: _Probe, now: int) -> None:
        self.stats.probe_failures += 1
        member = self._members.get(p.target_id)
        if member is not None and member.state is ALIVE and member.incarnation == p.incarnation:
            self.stats.suspicions += 1
            self._apply(replace(member, state=SUSPECT), now)

    def _reprobe_suspects(self, target: Member | None) -> list[Send]:
        """Ping a few suspects besides the target: the ping tells them they are suspected,
        so a live one refutes in its ack. Their acks settle no probe."""
        suspects = [m for m in self._live_peers() if m.state is SUSPECT and m != target]
        picked = self._rng.sample(suspects, min(self._cfg.indirect_probes, len(suspects)))
        return [self._ping(m) for m in picked]

    def _ping(self, member: Member) -> Send:
        return Send(member.addr, Ping(self._next_seq(), self._updates(member.node_id)))

    # --- gossip -----------------------------------------------------------------------

    def _sync_step(self, now: int, out: list[Send]) -> None:
        live = self._live_peers()
        if self._seeds and not live and now >= self._next_join_ms:
            self._next_join_ms = now + self._cfg.join_retry_ms
            out.extend(self._sync_to(self._seeds))
        if now < self._next_sync_ms:
            return
        self._sync_gap_ms = min(2 * self._sync_gap_ms, self._cfg.sync_interval_ms)
        self._next_sync_ms = now + self._sync_gap_ms
        if live:
            out.extend(self._sync_to([self._rng.choice(live).addr]))
        # Dead members and seeds we do not hear from: where a partition heals from. A
        # member that left said goodbye; its address is not worth a retry.
        dead = [m.addr for m in self._members.values() if m.state is DEAD]
        not_dead = {m.addr for m in self._members.values() if m.state is not DEAD}
        retry = sorted({*dead, *self._seeds} - not_dead)
        if retry:
            out.extend(self._sync_to([self._rng.choice(retry)]))

    def _sync_to(self, addrs: tuple[str, ...] | list[str]) -> list[Send]:
        state = self._full_state()
        return [Send(addr, Sync(state)) for addr in addrs]

    def _full_state(self) -> tuple[Member, ...]:
        others = (m for node_id, m in self._members.items() if node_id != self._me.node_id)
        return (self._me, *others)

    def _updates(self, to_id: str | None) -> tuple[Member, ...]:
        """The records for one message: ours first, then our view of the receiver if we
        suspect it (so it can refute), then the freshest queued updates."""
        out = {self._me.node_id: self._me}
        view = self._members.get(to_id) if to_id is not None else None
        if view is not None and view.state in (SUSPECT, DEAD):
            out[view.node_id] = view
        limit = self._cfg.retransmit_limit(len(self._members))
        queued = self._queue.items()
        fresh = heapq.nsmallest(self._cfg.max_piggyback, queued, key=lambda kv: kv[1][1])
        for node_id, (member, sent) in fresh:
            out.setdefault(node_id, member)
            if sent + 1 >= limit:
                del self._queue[node_id]
            else:
                self._queue[node_id] = (member, sent + 1)
        return tuple(out.values())

    def _live_peers(self) -> list[Member]:
        me = self._me.node_id
        return [m for m in self._members.values() if m.state in _LIVE and m.node_id != me]

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < MAX_SEQ else 0
        return self._seq


_HANDLERS = {
    Ping: Swim._on_ping,
    Ack: Swim._on_ack,
    PingReq: Swim._on_ping_req,
    Sync: Swim._on_sync,
    SyncReply: Swim._on_sync_reply,
}
