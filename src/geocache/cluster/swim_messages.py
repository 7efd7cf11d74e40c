"""SWIM's vocabulary: member records, messages, `Send`, `SwimConfig`, the strict wire codec.

A `Member` is one node's record as some node believes it: id, advertised address, region,
state and incarnation. Records travel inside every message: the sender's own record
always comes first (so a receiver learns id <-> address from any message), then the
piggybacked updates. Full-state exchanges (`Sync`, `SyncReply`) carry every record the
sender holds, again with its own first. `SwimConfig` holds every interval and limit,
each with its unit and reason, and the derived timeouts (suspicion, detection bound).

The codec is compact JSON (`{"v":1,"t":"ping","seq":7,"u":[[id, addr, region, "a", inc]]}`).
Messages come from the network, so `decode` trusts nothing: size, nesting, every field's
type, range and length, and the counts are checked, and anything else raises ValueError.
A node id or region is 1..128 (region 1..64) printable ASCII characters without spaces;
an address is `host:port` (the port after the last colon, so `::1:7379` works).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

WIRE_VERSION = 1
# 1024 records: the most members a cluster may have (SwimConfig.max_members cannot exceed
# it), so a full-state exchange always fits; ~440 bytes per record at the length limits.
MAX_WIRE_MEMBERS = 1024
# 64 records in a probe message: 8x the default piggyback budget, so a sender configured
# with a larger budget still gets through, while one message stays under ~30 KB.
MAX_WIRE_UPDATES = 64
# 512 KiB: a full-state message of MAX_WIRE_MEMBERS records at every length limit.
MAX_MESSAGE_BYTES = 512 * 1024
MAX_NODE_ID_CHARS = 128
MAX_REGION_CHARS = 64
MAX_HOST_CHARS = 255
# Incarnations start at wall-clock ms (~2**41) and grow by one per refutation; 2**62
# leaves room for any real lifetime while keeping `+ 1` far from any integer limit.
MAX_INCARNATION = (1 << 62) - 1
MAX_SEQ = (1 << 63) - 1


class MemberState(Enum):
    """A member's liveness, as a node believes it; the wire code is the value."""

    ALIVE = "a"
    SUSPECT = "s"
    DEAD = "d"
    LEFT = "l"


# Precedence for equal incarnations: a later state in this order wins. Records compare by
# (incarnation, rank): a higher incarnation always wins, which is how a node refutes.
STATE_RANK = {
    MemberState.ALIVE: 0,
    MemberState.SUSPECT: 1,
    MemberState.DEAD: 2,
    MemberState.LEFT: 3,
}


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    addr: str
    region: str
    state: MemberState
    incarnation: int

    def overrides(self, other: Member) -> bool:
        """True if this record supersedes `other` (a record about the same node)."""
        mine = (self.incarnation, STATE_RANK[self.state])
        return mine > (other.incarnation, STATE_RANK[other.state])


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    updates: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    updates: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping `target_id` and relay the ack with this `seq`."""

    seq: int
    target_id: str
    updates: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Sync:
    """Full state, sender first; answered with a `SyncReply`."""

    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class SyncReply:
    members: tuple[Member, ...]


Message = Ping | Ack | PingReq | Sync | SyncReply


def records(msg: Message) -> tuple[Member, ...]:
    """The member records a message carries, the sender's first."""
    return msg.members if isinstance(msg, Sync | SyncReply) else msg.updates


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """SWIM's timing and limits: times in ms, the rest counts; the reasons are inline."""

    # 1000 ms: one probe (two small messages) per node per second is negligible load, and
    # it leaves room for the indirect round trip between regions (see probe_timeout_ms).
    probe_interval_ms: int = 1_000
    # 400 ms: above the worst inter-region round trip (~300 ms Europe <-> Australia), so
    # a healthy far member answers a direct ping; the remaining 600 ms of the interval
    # cover the indirect path (up to two far round trips).
    probe_timeout_ms: int = 400
    # 3 helpers (SWIM, memberlist): at 10% loss a healthy member fails a whole probe with
    # probability 0.19 * 0.34**3, under 1%, and its suspicion is then refuted.
    indirect_probes: int = 3
    # 4 (memberlist's LAN default): the suspicion timeout is
    # suspicion_mult * max(1, log10(n)) * probe_interval_ms: 4 s up to 10 members, 5.2 s
    # at 20, 8 s at 100: several intervals for a live suspect to hear and refute.
    suspicion_mult: int = 4
    # 10 s: a full-state exchange costs O(n) bytes; every 10 s repairs missed gossip and
    # heals partitions within seconds of the network healing, at a few KB/s at most.
    sync_interval_ms: int = 10_000
    # 1 s: seeds often start together; retry them every second until one answers.
    join_retry_ms: int = 1_000
    # 8 updates per message (~100 bytes each): enough to spread a churn burst in a few
    # intervals while a probe message stays near 1 KB.
    max_piggyback: int = 8
    # 4 (memberlist): an update is piggybacked 4 * ceil(log10(n + 1)) times, which reaches
    # every member with high probability; full-state syncs catch the rest.
    retransmit_mult: int = 4
    # 24 h: DEAD and LEFT records are kept to refuse stale ALIVE gossip and to retry
    # (Sync) dead members, so a partition shorter than this heals by itself.
    dead_retention_ms: int = 86_400_000
    # 1024 members: far beyond a cache cluster; bounds memory against junk ids.
    max_members: int = 1024

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout_ms < self.probe_interval_ms:
            raise ValueError("need 0 < probe_timeout_ms < probe_interval_ms")
        if not 0 < self.max_piggyback < MAX_WIRE_UPDATES - 1:
            raise ValueError(f"max_piggyback must be in 1..{MAX_WIRE_UPDATES - 2}")
        if not 1 < self.max_members <= MAX_WIRE_MEMBERS:
            raise ValueError(f"max_members must be in 2..{MAX_WIRE_MEMBERS}")
        positive = (self.suspicion_mult, self.sync_interval_ms, self.join_retry_ms)
        if min(positive) <= 0 or self.retransmit_mult <= 0 or self.indirect_probes < 0:
            raise ValueError("intervals and multipliers must be positive")
        if self.dead_retention_ms < 0:
            raise ValueError("dead_retention_ms must be >= 0")

    def suspicion_timeout_ms(self, n: int) -> int:
        """How long a member stays SUSPECT before this node declares it DEAD."""
        scale = max(1.0, math.log10(max(n, 1)))
        return int(self.suspicion_mult * scale * self.probe_interval_ms)

    def detection_bound_ms(self, n: int) -> int:
        """Crash to DEAD at every member of an n-member cluster, whatever the loss.

        Each node's own round-robin probe of the crashed member starts within 2n - 2
        intervals and fails one interval later; its suspicion timer then runs out. One
        more interval absorbs tick lateness (a driver ticking every <= interval / 4).
        """
        return 2 * n * self.probe_interval_ms + self.suspicion_timeout_ms(n)

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * math.ceil(math.log10(n + 1))


@dataclass(frozen=True, slots=True)
class Send:
    """A message for the driver to deliver to `to_addr` ("host:port")."""

    to_addr: str
    msg: Message


# --- encoding ---------------------------------------------------------------------------


def _member_out(m: Member) -> list[Any]:
    return [m.node_id, m.addr, m.region, m.state.value, m.incarnation]


def encode(msg: Message) -> bytes:
    """The wire form of `msg`: compact ASCII JSON."""
    body: dict[str, Any] = {"v": WIRE_VERSION, "t": _TYPE_NAMES[type(msg)]}
    if isinstance(msg, Sync | SyncReply):
        body["m"] = [_member_out(m) for m in msg.members]
    else:
        body["seq"] = msg.seq
        if isinstance(msg, PingReq):
            body["target"] = msg.target_id
        body["u"] = [_member_out(m) for m in msg.updates]
    return json.dumps(body, separators=(",", ":")).encode("ascii")


# --- decoding ---------------------------------------------------------------------------


def decode(data: bytes) -> Message:
    """Parse and validate one message; anything malformed raises ValueError."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        body = json.loads(data.decode("ascii"))
    except RecursionError as exc:  # deeply nested junk; json raises this, not ValueError
        raise ValueError("message nested too deeply") from exc
    if not isinstance(body, dict):
        raise ValueError("message is not a JSON object")
    if body.get("v") != WIRE_VERSION:
        raise ValueError(f"unsupported wire version {body.get('v')!r}")
    kind = body.get("t")
    parse = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parse is None:
        raise ValueError(f"unknown message type {kind!r}")
    return parse(body)


def _keys(body: dict[str, Any], *expected: str) -> None:
    if set(body) != {"v", "t", *expected}:
        raise ValueError(f"message fields {sorted(body)} are not {sorted(expected)}")


def _int(value: object, limit: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{what} must be an integer in 0..{limit}")
    return value


def _text(value: object, max_chars: int, what: str) -> str:
    # Printable ASCII without spaces: ids and addresses end up in logs and RESP replies.
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= max_chars
        or not (value.isascii() and value.isprintable())
        or " " in value
    ):
        raise ValueError(f"{what} must be 1..{max_chars} printable ASCII characters")
    return value


def check_addr(value: object) -> str:
    """`value` if it is a valid "host:port" address, else ValueError."""
    addr = _text(value, MAX_HOST_CHARS + 6, "address")
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {addr!r} is not host:port")
    return addr


_STATES = {s.value: s for s in MemberState}


def member_in(raw: object) -> Member:
    """A `Member` from its wire form, validated."""
    if not isinstance(raw, list) or len(raw) != 5:
        raise ValueError("a member record is a list of 5 fields")
    state = _STATES.get(raw[3]) if isinstance(raw[3], str) else None
    if state is None:
        raise ValueError(f"unknown member state {raw[3]!r}")
    return Member(
        node_id=_text(raw[0], MAX_NODE_ID_CHARS, "node id"),
        addr=check_addr(raw[1]),
        region=_text(raw[2], MAX_REGION_CHARS, "region"),
        state=state,
        incarnation=_int(raw[4], MAX_INCARNATION, "incarnation"),
    )


def _members(raw: object, limit: int) -> tuple[Member, ...]:
    if not isinstance(raw, list) or not 0 < len(raw) <= limit:
        raise ValueError(f"a message carries 1..{limit} member records")
    members = tuple(member_in(r) for r in raw)
    if len({m.node_id for m in members}) != len(members):
        raise ValueError("a message carries one record per node id")
    if members[0].state not in (MemberState.ALIVE, MemberState.LEFT):
        raise ValueError("the sender's own record must be ALIVE or LEFT")
    return members


def _ping(body: dict[str, Any]) -> Message:
    _keys(body, "seq", "u")
    return Ping(_int(body["seq"], MAX_SEQ, "seq"), _members(body["u"], MAX_WIRE_UPDATES))


def _ack(body: dict[str, Any]) -> Message:
    _keys(body, "seq", "u")
    return Ack(_int(body["seq"], MAX_SEQ, "seq"), _members(body["u"], MAX_WIRE_UPDATES))


def _ping_req(body: dict[str, Any]) -> Message:
    _keys(body, "seq", "target", "u")
    return PingReq(
        _int(body["seq"], MAX_SEQ, "seq"),
        _text(body["target"], MAX_NODE_ID_CHARS, "target id"),
        _members(body["u"], MAX_WIRE_UPDATES),
    )


def _sync(body: dict[str, Any]) -> Message:
    _keys(body, "m")
    return Sync(_members(body["m"], MAX_WIRE_MEMBERS))


def _sync_reply(body: dict[str, Any]) -> Message:
    _keys(body, "m")
    return SyncReply(_members(body["m"], MAX_WIRE_MEMBERS))


_TYPE_NAMES: dict[type, str] = {
    Ping: "ping",
    Ack: "ack",
    PingReq: "pingreq",
    Sync: "sync",
    SyncReply: "syncreply",
}
_PARSERS = {
    "ping": _ping,
    "ack": _ack,
    "pingreq": _ping_req,
    "sync": _sync,
    "syncreply": _sync_reply,
}
