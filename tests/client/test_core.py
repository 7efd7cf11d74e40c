"""The client's sans-IO core: topology parsing, routing order, health, the call machine.

No sockets and no sleeping: time is a number passed in, replies and failures are fed by
hand, as the clients would after their I/O.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geocache.client.core import Attempt, Call, Core, Failure, Item
from geocache.client.errors import CommandError, Timeout, Unavailable
from geocache.client.health import Health, HealthPolicy
from geocache.client.ops import Ops
from geocache.client.topology import NodeInfo, Topology
from geocache.client.values import Values
from geocache.cluster import digest, placement
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from geocache.serializers import get_serializer

POLICY = HealthPolicy()


def entry(node_id: str, port: int, region: str = "eu", state: str = "alive") -> list[object]:
    """One GC.TOPOLOGY entry as RESP2 delivers it: a flat array of field, value."""
    return [
        b"id",
        node_id.encode(),
        b"region",
        region.encode(),
        b"addr",
        f"127.0.0.1:{port}".encode(),
        b"state",
        state.encode(),
        b"incarnation",
        0,
        b"replicas",
        2,
    ]


def eu_us_reply() -> list[list[object]]:
    eu = [entry(f"e{i}", 7000 + i) for i in range(1, 4)]
    us = [entry(f"u{i}", 8000 + i, "us") for i in range(1, 4)]
    return eu + us


def core_with(reply: list[list[object]], region: str | None = "eu") -> Core:
    core = Core(["127.0.0.1:7001"], region=region, rng=random.Random(1))
    core.apply_topology(reply, "127.0.0.1:7001", now=0.0)
    return core


# -- topology ------------------------------------------------------------------------------


def test_resp2_and_resp3_topologies_parse_the_same() -> None:
    flat = eu_us_reply()
    maps = [dict(zip(e[::2], e[1::2], strict=True)) for e in flat]
    a = Topology.from_reply(flat, "127.0.0.1:7001")
    b = Topology.from_reply(maps, "127.0.0.1:7001")
    assert a.same_as(b)
    assert a.regions() == ["eu", "us"]
    assert a.live_addrs("us") == ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]


def test_placement_is_the_nodes_placement() -> None:
    """Owners: the bucket's rendezvous ranking of the region's live ids, as cluster.py."""
    topology = Topology.from_reply(eu_us_reply(), "127.0.0.1:7001")
    for i in range(300):
        key = f"key-{i}".encode()
        ids = placement.owners(digest.bucket_token(digest.bucket_of(key)), ["e1", "e2", "e3"], 2)
        expected = tuple(f"127.0.0.1:{7000 + int(n[1])}" for n in ids)
        assert topology.owners(key, "eu") == expected


def test_suspect_members_own_keys_and_dead_ones_do_not() -> None:
    reply = [entry("e1", 7001), entry("e2", 7002, state="suspect"), entry("e3", 7003, state="dead")]
    topology = Topology.from_reply(reply, "127.0.0.1:7001")
    assert topology.live_addrs("eu") == ["127.0.0.1:7001", "127.0.0.1:7002"]
    for i in range(50):
        assert "127.0.0.1:7003" not in topology.owners(f"k{i}".encode(), "eu")


def test_a_wildcard_or_port_zero_address_is_read_against_the_node_asked() -> None:
    wild = entry("solo", 0)
    wild[5] = b"0.0.0.0:7379"
    topology = Topology.from_reply([wild], "10.1.2.3:7379")
    assert topology.live_addrs() == ["10.1.2.3:7379"]
    zero = entry("solo", 0)
    assert Topology.from_reply([zero], "127.0.0.1:9999").live_addrs() == ["127.0.0.1:9999"]


@pytest.mark.parametrize("reply", [None, [], [b"x"], [[b"id"]], [[b"addr", b"nope"]] * 2])
def test_a_malformed_topology_is_refused(reply: object) -> None:
    with pytest.raises(ValueError):
        Topology.from_reply(reply, "127.0.0.1:7001")


def test_a_server_without_gc_topology_keeps_the_seed_list() -> None:
    core = Core(["127.0.0.1:6379", "127.0.0.1:6380"])
    core.apply_topology(Error("ERR unknown command 'GC.TOPOLOGY'"), "127.0.0.1:6379", 0.0)
    assert set(core.plan(b"k", 0.0)) == {"127.0.0.1:6379", "127.0.0.1:6380"}


def merged(old: list[list[object]], *views: list[list[object]], every_s: float = 1.0) -> Topology:
    """The client's map after `old`, then each of `views`, `every_s` apart."""
    core = Core(["127.0.0.1:7001"])
    core.apply_topology(old, "127.0.0.1:7001", 0.0)
    for i, view in enumerate(views, start=1):
        core.apply_topology(view, "127.0.0.1:7001", i * every_s)
    return core.topology


def with_incarnation(e: list[object], incarnation: int) -> list[object]:
    return [*e[:9], incarnation, *e[10:]]


def test_a_partial_view_does_not_drop_live_members() -> None:
    full = [entry("e1", 7001), entry("e2", 7002), entry("e3", 7003)]
    partial = [entry("e1", 7001)]  # from a node that has just joined
    assert len(merged(full, partial).live_addrs()) == 3
    assert len(merged(full, partial, partial, every_s=100.0).live_addrs()) == 1  # long gone
    assert len(merged(full, partial, full, partial, every_s=40.0).live_addrs()) == 3
    dead = [entry("e1", 7001), entry("e2", 7002), entry("e3", 7003, state="dead")]
    assert "127.0.0.1:7003" not in merged(dead, partial).by_addr  # dead and absent: gone


def test_records_merge_by_incarnation_then_state() -> None:
    alive = [entry("e1", 7001), entry("e2", 7002)]
    suspect = [entry("e1", 7001), entry("e2", 7002, state="suspect")]
    assert merged(alive, suspect).by_addr["127.0.0.1:7002"].state == "suspect"
    assert merged(suspect, alive).by_addr["127.0.0.1:7002"].state == "suspect"
    restarted = [entry("e1", 7001), with_incarnation(entry("e2", 7002), 5)]
    dead = [entry("e1", 7001), entry("e2", 7002, state="dead")]
    assert merged(dead, restarted).by_addr["127.0.0.1:7002"].state == "alive"
    assert merged(restarted, dead).by_addr["127.0.0.1:7002"].state == "alive"


def test_a_warming_node_is_not_restored_by_a_probe() -> None:
    assert not Core.probe_answered(b"# Geocache\r\ncluster_ready:0\r\n")
    assert Core.probe_answered(b"# Geocache\r\ncluster_ready:1\r\n")
    assert Core.probe_answered(b"")  # a plain Redis: no such section
    assert Core.probe_answered(Error("NOAUTH Authentication required."))


# -- routing -------------------------------------------------------------------------------


def test_home_region_first_owners_first_then_the_nearest_region() -> None:
    core = core_with(eu_us_reply())
    key = b"some-key"
    plan = core.plan(key, now=0.0)
    eu_owners = core.topology.owners(key, "eu")
    assert plan[:2] == eu_owners
    assert set(plan[:3]) == set(core.topology.live_addrs("eu"))
    assert set(plan[3:]) == set(core.topology.live_addrs("us"))


def test_other_regions_are_ordered_by_measured_latency() -> None:
    reply = [*eu_us_reply(), entry("a1", 9001, "asia")]
    core = core_with(reply)
    for addr in core.topology.live_addrs("us"):
        core.succeeded(addr, 0.150, now=0.0)
    core.succeeded("127.0.0.1:9001", 0.080, now=0.0)
    assert core.region_order(now=10.0) == ("eu", "asia", "us")
    for _ in range(40):  # asia gets slow
        core.succeeded("127.0.0.1:9001", 0.300, now=10.0)
    assert core.region_order(now=20.0) == ("eu", "us", "asia")
    assert core.plan(b"k", now=30.0)[3] in core.topology.live_addrs("us")


def test_without_a_region_the_answering_seed_region_is_home() -> None:
    core = Core(["127.0.0.1:8002"])
    core.apply_topology(eu_us_reply(), "127.0.0.1:8002", 0.0)
    assert core.home_region == "us"


# -- health --------------------------------------------------------------------------------


def test_attempt_timeout_follows_latency_within_bounds() -> None:
    health = Health(POLICY, random.Random(1))
    assert health.attempt_timeout_s("a") == pytest.approx(POLICY.first_attempt_s, abs=1e-3)
    for _ in range(50):
        health.succeeded("a", 0.0002, now=0.0)  # loopback: the floor applies
    assert health.attempt_timeout_s("a") == pytest.approx(POLICY.min_attempt_s, abs=1e-3)
    for i in range(200):
        health.succeeded("b", 0.080 + 0.010 * (i % 2), now=0.0)  # a far region
    assert 0.17 < health.attempt_timeout_s("b") < 0.3
    for _ in range(50):
        health.succeeded("c", 2.0, now=0.0)
    assert health.attempt_timeout_s("c") == pytest.approx(POLICY.max_attempt_s, abs=1e-3)
    assert health.attempt_timeout_s("a", commands=1000) > health.attempt_timeout_s("a")


def test_down_after_repeated_timeouts_or_one_refusal_and_probed_with_backoff() -> None:
    health = Health(POLICY, random.Random(1))
    assert not health.failed("a", now=0.0)
    assert health.failed("a", now=0.0) and health.is_down("a")
    assert health.failed("b", now=0.0, certain=True) and health.is_down("b")
    health.probed("b", 0.001, now=0.0)  # leave "a" alone to probe
    gaps, now = [], 0.0
    for _ in range(8):
        due_at = health.next_due([])
        assert health.probes_due(due_at - 1e-6, []) == []
        assert health.probes_due(due_at, []) == ["a"]
        assert health.probes_due(due_at, []) == []  # handed out once
        gaps.append(due_at - now)
        now = due_at
        assert not health.probed("a", None, now)
    assert gaps[0] <= POLICY.probe_first_s * 1.2 + 1e-9
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps[:4]))
    assert POLICY.probe_max_s * 0.8 <= gaps[-1] <= POLICY.probe_max_s * 1.2
    assert health.probes_due(now + 10, []) == ["a"]
    assert health.probed("a", 0.001, now + 10) and not health.is_down("a")


# -- the call machine ----------------------------------------------------------------------


def run_round(call: Call, now: float) -> list[Attempt]:
    return call.next_round(now)


def test_a_refused_primary_fails_over_in_the_same_call_and_is_skipped_after() -> None:
    core = core_with(eu_us_reply())
    key = b"k1"
    primary, replica = core.topology.owners(key, "eu")
    call = core.call([core.key_item(encode_command("GET", key), key, 0.0)], 0.0, 1.0)
    (first,) = call.next_round(0.0)
    assert first.addr == primary
    call.failed(first, Failure.REFUSED, 0.001)
    assert core.take_downed() == [primary]
    (second,) = call.next_round(0.001)
    assert second.addr == replica
    call.replied(second, [b"v"], 0.0002, 0.002)
    assert call.next_round(0.002) == [] and call.outcomes == [b"v"]
    again = core.call([core.key_item(b"x", key, 0.01)], 0.01, 1.0)
    assert again.next_round(0.01)[0].addr == replica  # no attempt at the down primary


def test_the_deadline_ends_a_call_with_timeout() -> None:
    core = core_with(eu_us_reply())
    call = core.call([core.key_item(b"x", b"k", 0.0)], 0.0, 1.0)
    (attempt,) = call.next_round(0.0)
    assert attempt.timeout_s <= 1.0
    call.failed(attempt, Failure.TIMEOUT, 1.0)
    assert call.next_round(1.0) == []
    assert isinstance(call.outcomes[0], Timeout)


def test_the_attempt_timeout_never_passes_the_deadline() -> None:
    core = core_with(eu_us_reply())
    call = core.call([core.key_item(b"x", b"k", 0.0)], 0.0, 0.01)
    assert call.next_round(0.005)[0].timeout_s == pytest.approx(0.005)


def test_every_node_down_means_unavailable_without_an_attempt() -> None:
    core = core_with(eu_us_reply())
    for node in core.topology.nodes:
        core.failed(node.addr, Failure.REFUSED, 0.0)
    call = core.call([core.key_item(b"x", b"k", 0.0)], 0.0, 1.0)
    assert call.next_round(0.0) == []
    assert isinstance(call.outcomes[0], Unavailable)


def test_a_write_that_may_have_run_is_not_repeated_elsewhere() -> None:
    core = core_with(eu_us_reply())
    item = core.key_item(b"INCRBY", b"k", 0.0, idempotent=False)
    broken = core.call([item], 0.0, 1.0)
    broken.failed(broken.next_round(0.0)[0], Failure.BROKEN, 0.001)
    assert broken.next_round(0.001) == [] and isinstance(broken.outcomes[0], Unavailable)
    refused = core.call([item], 0.0, 1.0)
    first = refused.next_round(0.0)[0]
    refused.failed(first, Failure.REFUSED, 0.001)  # never sent: safe to send elsewhere
    assert refused.next_round(0.001)[0].addr != first.addr


def test_cluster_errors_move_on_without_counting_against_the_node() -> None:
    core = core_with(eu_us_reply())
    call = core.call([core.key_item(b"SET", b"k", 0.0)], 0.0, 1.0)
    first = call.next_round(0.0)[0]
    call.replied(first, [Error("CLUSTERDOWN no owner of the key answered")], 0.001, 0.001)
    second = call.next_round(0.001)[0]
    assert second.addr != first.addr and not core.health.is_down(first.addr)
    call.replied(second, [Error("WRONGTYPE nope")], 0.001, 0.002)  # a real answer
    assert call.outcomes == [Error("WRONGTYPE nope")]
    incr = core.call([core.key_item(b"INCRBY", b"k", 0.0, idempotent=False)], 0.0, 1.0)
    incr.replied(incr.next_round(0.0)[0], [Error("NOREPLICAS not enough")], 0.001, 0.0)
    assert incr.outcomes == [Error("NOREPLICAS not enough")]  # it ran here: not again


def test_a_pipeline_goes_to_each_primary_once_and_failed_keys_move_on() -> None:
    core = core_with(eu_us_reply())
    keys = [f"key-{i}".encode() for i in range(60)]
    call = core.call([core.key_item(k, k, 0.0) for k in keys], 0.0, 1.0)
    attempts = call.next_round(0.0)
    assert len(attempts) == 3  # the three eu nodes, one pipeline each
    for attempt in attempts:
        assert {core.topology.owners(keys[i], "eu")[0] for i in attempt.items} == {attempt.addr}
        assert attempt.payload == b"".join(keys[i] for i in attempt.items)
    dead, *alive = attempts
    for attempt in alive:
        call.replied(attempt, [b"v"] * len(attempt.items), 0.001, 0.001)
    call.failed(dead, Failure.REFUSED, 0.001)
    retry = call.next_round(0.002)
    assert dead.addr not in {a.addr for a in retry}
    assert sorted(i for a in retry for i in a.items) == sorted(dead.items)


def test_item_with_explicit_candidates() -> None:
    core = Core(["127.0.0.1:1", "127.0.0.1:2"])
    call = core.call([Item(b"PING", ("127.0.0.1:2", "127.0.0.1:1"))], 0.0, 1.0)
    assert call.next_round(0.0)[0].addr == "127.0.0.1:2"


# -- ops -------------------------------------------------------------------------------------


def test_ops_decode_and_fall_back() -> None:
    ops = Ops(Values(get_serializer("json")))
    get = ops.get("k", "dflt")
    assert get.finish([b'\xc1json:{"a":1}'], False) == {"a": 1}
    assert get.finish([b'{"a":1}'], False) == b'{"a":1}'  # plain: as written
    assert get.finish([None], False) == "dflt"
    assert get.finish([Unavailable("down")], True) == "dflt"
    with pytest.raises(Unavailable):
        get.finish([Unavailable("down")], False)
    with pytest.raises(CommandError):
        get.finish([Error("WRONGTYPE x")], True)  # an answer is never a miss
    incr = ops.incr("k", 1)
    with pytest.raises(Timeout):
        incr.finish([Timeout("slow")], True)  # no count can be made up
    ttl = ops.ttl("k")
    assert [ttl.finish([r], False) for r in (-2, -1, 1500)] == [None, math.inf, 1.5]
    many = ops.get_many(["a", b"b", "c"])
    assert many.finish([b"1", None, Timeout("x")], True) == {"a": b"1"}
    assert ops.set("k", 1, 2.5).commands[0].payload.endswith(b"$2\r\nPX\r\n$4\r\n2500\r\n")
    with pytest.raises(ValueError):
        ops.set("k", 1, -1)
    assert ops.expire("k", 0).commands[0].payload.startswith(b"*2\r\n$3\r\nDEL")
    assert not ops.incr("k", 1).commands[0].idempotent


def test_node_info_live() -> None:
    assert NodeInfo("a", "eu", "h:1", state="suspect").live
    assert not NodeInfo("a", "eu", "h:1", state="left").live


# -- the call machine under any sequence of failures -----------------------------------------

RESULTS = ["reply", "refused", "timeout", "broken", "clusterdown"]


@settings(max_examples=300, deadline=None)
@given(
    layout=st.lists(st.sampled_from(["eu", "us", "asia"]), min_size=1, max_size=6),
    keys=st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=12),
    idempotent=st.lists(st.booleans(), min_size=12, max_size=12),
    script=st.lists(
        st.tuples(st.sampled_from(RESULTS), st.floats(min_value=0, max_value=0.3)), max_size=80
    ),
)
def test_calls_end_and_never_repeat_what_may_have_run(
    layout: list[str], keys: list[bytes], idempotent: list[bool], script: list[tuple[str, float]]
) -> None:
    reply = [entry(f"n{i}", 7000 + i, region) for i, region in enumerate(layout)]
    core = core_with(reply, region=layout[0])
    items = [core.key_item(k, k, 0.0, idempotent[i]) for i, k in enumerate(keys)]
    call = core.call(items, 0.0, 1.0)
    now, steps = 0.0, iter(script)
    tried: dict[int, list[str]] = {i: [] for i in range(len(items))}
    ambiguous: set[int] = set()  # non-idempotent commands that may have run somewhere
    for _ in range(len(layout) * len(keys) + 2):
        attempts, round_at = call.next_round(now), now
        if not attempts:
            break
        for attempt in attempts:
            assert not core.health.is_down(attempt.addr)  # never waits on a known-down node
            assert 0 < attempt.timeout_s <= call.deadline - round_at + 1e-9
            for i in attempt.items:
                assert i not in ambiguous
                assert attempt.addr not in tried[i]
                tried[i].append(attempt.addr)
            kind, elapsed = next(steps, ("reply", 0.0))
            now += elapsed
            if kind == "reply":
                call.replied(attempt, [b"ok"] * len(attempt.items), elapsed, now)
            elif kind == "clusterdown":
                replies = [Error("CLUSTERDOWN x")] * len(attempt.items)
                call.replied(attempt, replies, elapsed, now)
            else:
                failure = Failure(kind)
                call.failed(attempt, failure, now)
                if failure is not Failure.REFUSED:
                    ambiguous |= {i for i in attempt.items if not items[i].idempotent}
    assert call.done
    for i, outcome in enumerate(call.outcomes):
        assert outcome == b"ok" or isinstance(outcome, Timeout | Unavailable | Error)
        assert tried[i] == [a for a in items[i].candidates if a in tried[i]]  # in order


def test_a_node_answering_loading_is_skipped_until_a_probe_finds_it_ready() -> None:
    """A node (or a region) restarted empty answers LOADING while it warms up: calls move
    on, and do not come back to it until its probe says `cluster_ready:1`."""
    core = core_with(eu_us_reply())
    key = b"k1"
    primary, replica = core.topology.owners(key, "eu")
    call = core.call([core.key_item(b"GET", key, 0.0)], 0.0, 1.0)
    first = call.next_round(0.0)[0]
    call.replied(first, [Error("LOADING geocache is joining its cluster")], 0.001, 0.001)
    assert first.addr == primary and core.health.is_down(primary)
    assert core.take_downed() == []  # not failed: its connections stay
    call.replied(call.next_round(0.001)[0], [b"v"], 0.001, 0.002)
    assert call.outcomes == [b"v"]
    later = core.call([core.key_item(b"GET", key, 0.01)], 0.01, 1.0)
    assert later.next_round(0.01)[0].addr == replica
    assert primary in core.probes_due(1.0)
    assert not Core.probe_answered(b"cluster_ready:0\r\n")
    core.probed(primary, None, 1.0)  # still warming: stays down
    assert core.health.is_down(primary)
    core.probed(primary, 0.001, 5.0)  # ready now
    again = core.call([core.key_item(b"GET", key, 5.0)], 5.0, 1.0)
    assert again.next_round(5.0)[0].addr == primary
