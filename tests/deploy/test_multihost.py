"""Nodes on hosts of their own: each in a network namespace with its own address
(tests/faults/netns.py), finding each other by DNS seeds through a DNS server the test
runs, and by mDNS on the bridge between the namespaces; two regions joined through the
delay relay, on which the region checks of tests/cluster pass.

TLS is on every link, as across real networks: each node has no plaintext port, only
RESP over TLS (for clients, the test's included, and peers: `--tls-cluster yes`), with
one node certificate naming every host's address, made by `geocache certs`; the peers
check those names through the relay too. Every node of the DNS test binds the wildcard
address without --advertise-addr, so each also shows that a node advertises the address
(and TLS port) toward its first seed. Needs root (CI runs as root).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from cluster import test_regions_processes as region_checks
from faults.netns import PREFIX, Host, Network
from geocache.cli.certs import CertFiles, make_certs
from geocache.relay import RelaySet
from geocache.tls import client_context
from support.cluster import SECRET, client, cluster_args, poll, states
from support.procs import REPO_ROOT, ServerProcess, _spawn, geocache_argv, geocache_env
from support.tls import wait_tls_ready

from .dns_server import TestDnsServer, Zone

# Each node's one RESP port: TLS, for clients and peers alike.
PORT = 7379
# One way between the regions: a WAN link in miniature.
ONE_WAY_MS = 15
# Membership converges in a few probe intervals; DNS names are re-resolved every 5 s.
JOIN_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


@pytest.fixture
def network() -> Iterator[Network]:
    assert os.geteuid() == 0, "the multi-host tests put nodes in network namespaces (root)"
    net = Network()
    try:
        net.create()
        yield net
    finally:
        net.close()


def make_tls(directory: Path, hosts: Iterable[Host]) -> CertFiles:
    """A CA of the test's own, one node certificate naming every host's address (as peers
    dial it, through the relay or not) and a client certificate."""
    return make_certs(directory, [host.addr for host in hosts])


def tls_args(tls: CertFiles) -> list[str]:
    """No plaintext port; RESP over TLS on PORT; peer links over mutual TLS."""
    return [
        *("--port", "0", "--tls-port", str(PORT)),
        *("--tls-cert-file", str(tls.node_cert), "--tls-key-file", str(tls.node_key)),
        *("--tls-ca-cert-file", str(tls.ca_cert), "--tls-cluster", "yes"),
    ]


def spawn(host: Host, args: list[str], workdir: Path, tls: CertFiles) -> ServerProcess:
    argv = host.exec_argv(geocache_argv(0, ["--bind", "0.0.0.0", *tls_args(tls), *args]))
    log_path = workdir / f"{host.name}-{time.monotonic_ns()}.log"
    server = _spawn("geocache", argv, PORT, log_path, cwd=REPO_ROOT, env=geocache_env())
    server.host = host.addr
    server.client_tls = {
        "ssl": True,
        "ssl_ca_certs": str(tls.ca_cert),
        "ssl_certfile": str(tls.client_cert),
        "ssl_keyfile": str(tls.client_key),
        "ssl_check_hostname": True,
    }
    return server


def wait_ready(node: ServerProcess, tls: CertFiles) -> None:
    context = client_context(str(tls.ca_cert), None, str(tls.client_cert), str(tls.client_key))
    wait_tls_ready(node, PORT, context)


def refuses_plaintext(node: ServerProcess) -> bool:
    """PING in plaintext is answered that the port speaks TLS."""
    with socket.create_connection((node.host, PORT), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"-ERR this port speaks TLS")


def addrs_seen(node: ServerProcess) -> set[str]:
    """The addresses `node` holds for the members it knows."""
    with client(node) as c:
        topology = c.execute_command("GC.TOPOLOGY")
    found = set()
    for item in topology:
        record = item if isinstance(item, dict) else dict(zip(item[::2], item[1::2], strict=True))
        found.add(record[b"addr"].decode())
    return found


def stop_all(nodes: dict[str, ServerProcess]) -> None:
    for node in nodes.values():
        if node.is_running():
            node.proc.send_signal(signal.SIGCONT)
            node.terminate()
    for node in nodes.values():
        node.stop()


def test_two_regions_find_each_other_by_dns_through_the_delay_relay(
    network: Network, tmp_path: Path
) -> None:
    regions = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    hosts = {name: network.add_host(name) for name in regions}
    tls = make_tls(tmp_path / "tls", hosts.values())
    zone = Zone()
    for name, host in hosts.items():
        zone.set_addresses(f"{name}.gc.test", [host.addr])
    zone.set_addresses("a.gc.test", [hosts["a1"].addr, hosts["a2"].addr])
    # b2's name lists only b2 at first: it starts alone and joins once DNS lists b1 too.
    zone.set_addresses("b.gc.test", [hosts["b2"].addr])
    zone.set_service("_geocache._tcp.a.gc.test", [(10, 0, PORT, "a1.gc.test")])
    dns = TestDnsServer(zone, address=network.gateway)
    nodes: dict[str, ServerProcess] = {}
    subnet = f"{PREFIX}.{network.octet}.0/24"
    try:
        with RelaySet(listen_host=network.gateway, allow=subnet) as relays:
            for name, host in hosts.items():
                dialer = "B" if regions[name] == "A" else "A"
                relays.add(f"{host.addr}:{PORT}", ONE_WAY_MS, group=dialer)
            for name, host in hosts.items():
                region = regions[name]
                seeds = {
                    "a1": "dns:a.gc.test:7379",
                    "a2": "srv:_geocache._tcp.a.gc.test",
                    "b1": "dns:a.gc.test:7379",
                    "b2": "dns:b.gc.test:7379",
                }[name]
                routes = relays.routes(region)
                peer_map = ",".join(f"{addr}={via}" for addr, via in routes.items())
                extra = ["--region", region, "--peer-map", peer_map, "--dns-server", dns.addr]
                if region == "B":
                    extra += ["--network", "wan"]  # the far region's timing profile
                args = cluster_args(name, seeds, *extra, log_level="info")
                nodes[name] = spawn(host, args, tmp_path, tls)
            for node in nodes.values():
                wait_ready(node, tls)
                assert refuses_plaintext(node)
            for name in ("a1", "a2", "b1"):
                poll(
                    lambda n=nodes[name]: list(states(n).values()).count("alive") == 3,
                    JOIN_TIMEOUT_S,
                    f"{name} sees a1, a2, b1",
                )
            assert list(states(nodes["b2"]).values()) == ["alive"], "b2 is alone"
            zone.set_addresses("b.gc.test", [hosts["b1"].addr, hosts["b2"].addr])
            for node in nodes.values():
                poll(
                    lambda n=node: list(states(n).values()).count("alive") == 4,
                    JOIN_TIMEOUT_S,
                    "4 alive once b.gc.test lists b1",
                )
            # The wildcard bind advertised each host's own address, at its TLS port.
            expected = {f"{host.addr}:{PORT}" for host in hosts.values()}
            for node in nodes.values():
                assert addrs_seen(node) == expected
            region_checks.test_a_write_reaches_the_other_region_with_its_version_and_expiry(nodes)
            region_checks.test_a_delete_crosses_regions_and_an_older_write_does_not_undo_it(nodes)
            region_checks.test_concurrent_writes_in_both_regions_converge(nodes)
            # The streams measured the relay's round trip (2 x 15 ms one way, at least).
            with client(nodes["a1"]) as c:
                info = c.info("regions")
                stats = c.info("stats")
            assert info["region_B"]["rtt_ms"] >= 2 * ONE_WAY_MS
            assert sum(r.accepted for r in relays.relays()) > 0
            # Peers completed handshakes with a1; none failed (every name checked out).
            assert stats["tls_handshakes"] > 0 and stats["tls_handshake_failures"] == 0
    finally:
        stop_all(nodes)
        dns.stop()


def test_nodes_of_one_cluster_find_each_other_by_mdns(network: Network, tmp_path: Path) -> None:
    """Three nodes with no seeds join by mDNS; a node of another cluster name, and one
    with the name but not the secret, stay out."""
    names = ("m1", "m2", "m3", "other", "stranger")
    hosts = {name: network.add_host(name) for name in names}
    tls = make_tls(tmp_path / "tls", hosts.values())
    nodes: dict[str, ServerProcess] = {}
    try:
        for name, host in hosts.items():
            args = cluster_args(
                name,
                None,
                "--discover",
                "mdns",
                "--advertise-addr",
                f"{host.addr}:{PORT}",
                "--cluster-name",
                "lab",
            )
            if name == "other":
                args += ["--cluster-name", "elsewhere"]
            if name == "stranger":
                args += ["--cluster-secret", SECRET + "-not"]
            nodes[name] = spawn(host, args, tmp_path, tls)
        for node in nodes.values():
            wait_ready(node, tls)
        members = {f"{hosts[n].addr}:{PORT}" for n in ("m1", "m2", "m3")}
        for name in ("m1", "m2", "m3"):
            poll(
                lambda n=nodes[name]: list(states(n).values()).count("alive") == 3,
                JOIN_TIMEOUT_S,
                f"{name} sees m1, m2, m3",
            )
        time.sleep(2)  # time for the others to have joined, were they let in
        for name in ("m1", "m2", "m3"):
            assert addrs_seen(nodes[name]) == members
        assert list(states(nodes["other"]).values()) == ["alive"]
        assert list(states(nodes["stranger"]).values()) == ["alive"]
        with client(nodes["m1"]) as c:
            assert c.set("found-by-mdns", "yes")
        with client(nodes["m3"]) as c:
            assert c.get("found-by-mdns") == b"yes"
    finally:
        stop_all(nodes)
