"""Seeds by name (cluster/discovery.py), the address a wildcard bind advertises
(cluster/advertise.py) and the membership timing profiles (cluster/timing.py)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
import redis

from geocache.clock import ManualClock
from geocache.cluster.advertise import advertise_addr, with_advertise_addr
from geocache.cluster.discovery import (
    DnsResolver,
    DnsSeed,
    SeedWatcher,
    SrvSeed,
    StaticSeed,
    join_host_port,
    parse_seed,
    parse_seeds,
    resolve_seeds,
    split_server,
)
from geocache.cluster.swim import Swim, local_member
from geocache.cluster.swim_messages import Member, MemberState, SwimConfig, Sync
from geocache.cluster.timing import PROFILES, detection_bounds, probe_timeout_ms, swim_config
from geocache.config import NodeConfig
from geocache.ports import free_port
from support.cluster import cluster_args, start_at

from .dns_server import TestDnsServer

# -- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seed"),
    [
        ("10.0.0.1:7379", StaticSeed("10.0.0.1:7379")),
        ("[fd00::1]:7379", StaticSeed("[fd00::1]:7379")),
        ("node-1.example:7379", StaticSeed("node-1.example:7379")),
        (
            "dns:geocache-eu.default.svc.cluster.local:7379",
            DnsSeed("geocache-eu.default.svc.cluster.local", 7379),
        ),
        ("dns:cache.example.:7000", DnsSeed("cache.example", 7000)),
        ("srv:_geocache._tcp.example.org", SrvSeed("_geocache._tcp.example.org")),
        (" srv:_peer._tcp.eu.example. ", SrvSeed("_peer._tcp.eu.example")),
    ],
)
def test_seeds_parse(text: str, seed: object) -> None:
    assert parse_seed(text) == seed


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",
        "dns:name",
        "dns::7379",
        "dns:name:0",
        "dns:name:70000",
        "srv:geocache.example",
        "srv:_geocache.example",
        ":7379",
        "host:port",
    ],
)
def test_bad_seeds_say_what_a_seed_is(text: str) -> None:
    with pytest.raises(ValueError, match="seed"):
        parse_seed(text)


def test_a_list_mixes_kinds_and_skips_blanks() -> None:
    seeds = parse_seeds("10.0.0.1:7379, ,dns:a.example:7379,srv:_g._tcp.example,")
    assert [type(s).__name__ for s in seeds] == ["StaticSeed", "DnsSeed", "SrvSeed"]


def test_addresses_join_with_brackets_for_ipv6() -> None:
    assert join_host_port("10.0.0.1", 7379) == "10.0.0.1:7379"
    assert join_host_port("fd00::1", 7379) == "[fd00::1]:7379"


def test_a_dns_server_is_an_address_with_an_optional_port() -> None:
    assert split_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_server("127.0.0.1") == ("127.0.0.1", 53)
    assert split_server("[::1]:5353") == ("::1", 5353)
    with pytest.raises(ValueError):
        split_server("dns.example:53")


# -- resolution against a DNS server of our own ------------------------------------------


async def test_a_dns_seed_is_every_a_and_aaaa_record(dns_server: TestDnsServer) -> None:
    dns_server.zone.set_addresses("gc.test", ["127.0.0.11", "127.0.0.12", "fd00::7"])
    resolver = DnsResolver(dns_server.addr)
    addrs = await resolve_seeds(parse_seeds("dns:gc.test:7379,127.0.0.11:7379"), resolver)
    assert addrs == ["127.0.0.11:7379", "127.0.0.12:7379", "[fd00::7]:7379"]


async def test_an_srv_seed_is_each_target_at_its_port_by_priority(
    dns_server: TestDnsServer,
) -> None:
    zone = dns_server.zone
    zone.set_addresses("a.test", ["127.0.0.21"])
    zone.set_addresses("b.test", ["127.0.0.22", "127.0.0.23"])
    zone.set_service("_geocache._tcp.test", [(20, 0, 7400, "b.test"), (10, 0, 7379, "a.test")])
    addrs = await resolve_seeds(
        parse_seeds("srv:_geocache._tcp.test"), DnsResolver(dns_server.addr)
    )
    assert addrs == ["127.0.0.21:7379", "127.0.0.22:7400", "127.0.0.23:7400"]


async def test_a_name_that_does_not_resolve_yet_is_no_error(dns_server: TestDnsServer) -> None:
    resolver = DnsResolver(dns_server.addr)
    assert await resolve_seeds(parse_seeds("dns:missing.test:7379"), resolver) == []
    assert await resolve_seeds(parse_seeds("srv:_x._tcp.missing.test"), resolver) == []


async def test_the_watcher_resolves_again_and_reports_changes(dns_server: TestDnsServer) -> None:
    zone = dns_server.zone
    zone.set_addresses("gc.test", ["127.0.0.31"])
    heard: list[list[str]] = []
    watcher = SeedWatcher(
        parse_seeds("dns:gc.test:7379"), DnsResolver(dns_server.addr), heard.append, 0.05
    )
    assert await watcher.resolve() == ["127.0.0.31:7379"]
    watcher.start()
    try:
        zone.set_addresses("gc.test", ["127.0.0.31", "127.0.0.32"])
        for _ in range(100):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.02)
        zone.set_addresses("gc.test", [])  # nothing now: the last list stays
        await asyncio.sleep(0.2)
    finally:
        watcher.stop()
    assert heard == [["127.0.0.31:7379"], ["127.0.0.31:7379", "127.0.0.32:7379"]]
    assert watcher.addrs == ["127.0.0.31:7379", "127.0.0.32:7379"]


def test_resolved_seeds_feed_membership() -> None:
    """New addresses get a Sync at once; known ones and this node's own do not."""
    clock = ManualClock()
    me = local_member("n1", "127.0.0.1:7001", "eu", clock)
    swim = Swim(me, SwimConfig(), clock, random.Random(1))
    first = swim.join(["127.0.0.1:7001", "127.0.0.1:7002"])
    assert [s.to_addr for s in first] == ["127.0.0.1:7002"]
    again = swim.update_seeds(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])
    assert [(s.to_addr, type(s.msg)) for s in again] == [("127.0.0.1:7003", Sync)]
    assert swim.update_seeds(["127.0.0.1:7003"]) == []


# -- advertise address ------------------------------------------------------------------


def clustered(**settings: object) -> NodeConfig:
    return NodeConfig(cluster_secret="s", **settings)  # type: ignore[arg-type]


def test_a_specific_bind_is_advertised_as_is() -> None:
    config = clustered(bind="10.1.2.3", port=7379)
    assert advertise_addr(config) == ("10.1.2.3:7379", "the bind address")
    assert (
        advertise_addr(clustered(advertise_addr="cache-1:7379", bind="0.0.0.0"))[0]
        == "cache-1:7379"
    )


def test_a_wildcard_bind_advertises_the_interface_toward_the_first_seed() -> None:
    asked: list[str] = []

    def route(host: str) -> str:
        asked.append(host)
        return "10.1.2.3"

    config = clustered(bind="0.0.0.0", port=7379, seeds="10.9.9.9:7379,10.8.8.8:7379")
    chosen, config2 = advertise_addr(config, route), with_advertise_addr(config, route)[0]
    assert chosen == ("10.1.2.3:7379", "the interface toward the first seed 10.9.9.9")
    assert asked[0] == "10.9.9.9"
    # The node id was bind:port (0.0.0.0:7379 for every node): it becomes the address.
    assert (config2.advertise_addr, config2.node_id) == ("10.1.2.3:7379", "10.1.2.3:7379")
    named = with_advertise_addr(config.replace(node_id="eu-1"), route)[0]
    assert named.node_id == "eu-1"


def test_the_real_route_toward_a_loopback_seed_is_loopback() -> None:
    config = clustered(bind="0.0.0.0", port=7379, seeds="127.0.0.1:7400")
    assert advertise_addr(config)[0] == "127.0.0.1:7379"


def test_a_dns_seed_is_resolved_with_the_dns_server_to_find_the_route(
    dns_server: TestDnsServer,
) -> None:
    dns_server.zone.set_addresses("gc.test", ["127.0.0.44"])
    config = clustered(bind="::", port=7379, seeds="dns:gc.test:7379", dns_server=dns_server.addr)
    assert advertise_addr(config, lambda host: host)[0] == "127.0.0.44:7379"


def test_a_wildcard_bind_with_nothing_to_look_toward_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="--advertise-addr"):
        advertise_addr(clustered(bind="0.0.0.0", discover="mdns"))

    def no_route(host: str) -> str:
        raise OSError("Network is unreachable")

    with pytest.raises(ValueError, match="no route toward the first seed"):
        advertise_addr(clustered(bind="0.0.0.0", seeds="10.9.9.9:7379"), no_route)


# -- timing -----------------------------------------------------------------------------


def test_the_profiles_and_the_flags_over_them() -> None:
    assert swim_config(NodeConfig()) == SwimConfig()
    wan = swim_config(NodeConfig(network="wan"))
    assert (wan.probe_interval_ms, wan.probe_timeout_ms, wan.suspicion_mult) == (2000, 800, 6)
    tuned = swim_config(NodeConfig(network="wan", swim_probe_timeout_ms=500, swim_suspicion_mult=8))
    assert (tuned.probe_interval_ms, tuned.probe_timeout_ms, tuned.suspicion_mult) == (2000, 500, 8)
    with pytest.raises(ValueError, match="network"):
        NodeConfig(network="moon")
    with pytest.raises(ValueError, match="probe_timeout_ms"):
        swim_config(NodeConfig(swim_probe_interval_ms=300))


def test_the_detection_bounds_the_readme_quotes() -> None:
    # 2n probe intervals, plus the suspicion timeout.
    assert detection_bounds("lan") == {3: 10.0, 6: 16.0, 20: 45.2}
    assert detection_bounds("wan") == {3: 24.0, 6: 36.0, 20: 95.6}


def test_a_far_region_gets_a_probe_timeout_from_its_round_trip() -> None:
    lan, wan = PROFILES["lan"], PROFILES["wan"]
    assert probe_timeout_ms(lan, None) == 400
    assert probe_timeout_ms(lan, 40.0) == 400  # never below the profile's
    assert probe_timeout_ms(lan, 180.0) == 540  # 3 round trips
    assert probe_timeout_ms(lan, 300.0) == 600  # at most 60% of the interval
    assert probe_timeout_ms(wan, 300.0) == 900


def test_swim_waits_longer_for_a_member_of_a_far_region() -> None:
    clock = ManualClock()
    swim = Swim(
        local_member("n1", "127.0.0.1:7001", "eu", clock), SwimConfig(), clock, random.Random(1)
    )
    near = Member("n2", "127.0.0.1:7002", "eu", MemberState.ALIVE, 1)
    far = Member("n3", "127.0.0.1:7003", "ap", MemberState.ALIVE, 1)
    swim.set_region_rtt("ap", 190.0)
    assert (swim.probe_timeout_ms(near), swim.probe_timeout_ms(far)) == (400, 570)
    swim.set_region_rtt("ap", None)
    assert swim.probe_timeout_ms(far) == 400


# -- a node whose name lists only itself -----------------------------------------------


def test_the_first_node_behind_a_name_is_ready_at_once(
    dns_server: TestDnsServer, tmp_path: Path
) -> None:
    """The first pod of a region: its headless Service lists only itself. It is alone,
    not waiting to join (which would answer LOADING for warm-up's 10 s)."""
    port = free_port()
    dns_server.zone.set_addresses("solo.test", ["127.0.0.1"])
    args = ["--seeds", f"dns:solo.test:{port}", "--dns-server", dns_server.addr]
    node = start_at(port, tmp_path, cluster_args("solo", None, *args))
    try:
        started = time.monotonic()
        with redis.Redis(port=port, socket_timeout=5) as c:
            while True:
                try:
                    assert c.get("anything") is None
                    break
                except redis.exceptions.BusyLoadingError:
                    assert time.monotonic() - started < 3, "still LOADING after 3 s"
                    time.sleep(0.05)
    finally:
        node.stop()
