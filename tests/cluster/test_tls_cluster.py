"""A cluster whose peer links are mutual TLS (`--tls-cluster yes`): three node processes
in two regions replicate a write from one region to the other over TLS, clients reach
them over TLS, and a node whose certificate comes from another CA cannot join (each
side logs why) while the cluster goes on serving."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

import geocache
from geocache.tls import client_context
from support.cluster import cluster_args, poll, states
from support.procs import ServerProcess, free_port, start_geocache
from support.tls import Certs, tls_args, write_pair


class TlsMember:
    def __init__(self, server: ServerProcess, tls_port: int) -> None:
        self.server, self.tls_port = server, tls_port

    @property
    def tls_addr(self) -> str:
        return f"127.0.0.1:{self.tls_port}"


def start_member(
    tmp: Path, certs: Certs, node_id: str, region: str, seed: str | None, **kw: object
) -> TlsMember:
    tls_port = free_port()
    node = kw.get("node")
    args = cluster_args(node_id, seed, "--region", region, "--tls-cluster", "yes")
    args += tls_args(certs, tls_port, node)  # type: ignore[arg-type]
    return TlsMember(start_geocache(tmp, args), tls_port)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("cluster-certs"))


@pytest.fixture(scope="module")
def members(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs
) -> Iterator[dict[str, TlsMember]]:
    tmp = tmp_path_factory.mktemp("tls-cluster")
    nodes: dict[str, TlsMember] = {}
    try:
        nodes["a1"] = start_member(tmp, certs, "a1", "A", None)
        seed = nodes["a1"].tls_addr  # peers are dialled at their TLS port
        nodes["a2"] = start_member(tmp, certs, "a2", "A", seed)
        nodes["b1"] = start_member(tmp, certs, "b1", "B", seed)
        for member in nodes.values():
            poll(
                lambda m=member: list(states(m.server).values()).count("alive") == 3,
                20,
                "3 alive",
            )
        yield nodes
    finally:
        for member in nodes.values():
            if member.server.is_running():
                member.server.proc.send_signal(signal.SIGCONT)
            member.server.stop()


def tls_redis(member: TlsMember, certs: Certs) -> redis.Redis:
    return redis.Redis(
        port=member.tls_port,
        ssl=True,
        ssl_ca_certs=str(certs.ca_file),
        ssl_certfile=str(certs.client.cert),
        ssl_keyfile=str(certs.client.key),
        socket_timeout=5,
    )


def test_members_advertise_their_tls_address(members: dict[str, TlsMember]) -> None:
    with redis.Redis(port=members["a1"].server.port) as r:
        topology = r.execute_command("GC.TOPOLOGY")
    records = [
        t if isinstance(t, dict) else dict(zip(t[::2], t[1::2], strict=True)) for t in topology
    ]
    addrs = {r[b"addr"].decode() for r in records}
    assert addrs == {m.tls_addr for m in members.values()}


def test_a_write_in_one_region_is_read_in_the_other_over_tls(
    members: dict[str, TlsMember], certs: Certs
) -> None:
    with tls_redis(members["a2"], certs) as r:
        assert r.set("tls:geo", "from-A", ex=300)
    with tls_redis(members["b1"], certs) as r:
        poll(lambda: r.get("tls:geo") == b"from-A", 10, "the write in region B")
    with tls_redis(members["b1"], certs) as r:
        assert r.delete("tls:geo") == 1
    with tls_redis(members["a1"], certs) as r:
        poll(lambda: r.get("tls:geo") is None, 10, "the delete in region A")


def test_the_geocache_client_routes_over_tls(members: dict[str, TlsMember], certs: Certs) -> None:
    context = client_context(
        ca_file=str(certs.ca_file),
        cert_file=str(certs.client.cert),
        key_file=str(certs.client.key),
    )
    seeds = [f"rediss://{m.tls_addr}" for m in members.values()]
    with geocache.Client(seeds, region="A", ssl_context=context) as c:
        for i in range(20):
            c.set(f"tls:c{i}", i)
        assert c.get_many([f"tls:c{i}" for i in range(20)]) == {
            f"tls:c{i}": str(i).encode() for i in range(20)
        }
        assert set(c.owners("tls:c1")) <= {m.tls_addr for m in members.values()}


def test_a_node_with_a_certificate_from_another_ca_cannot_join(
    members: dict[str, TlsMember], certs: Certs, tmp_path: Path
) -> None:
    other = trustme.CA()
    stranger = write_pair(other.issue_cert("127.0.0.1"), tmp_path, "stranger")
    seed = members["a1"]
    intruder = start_member(tmp_path, certs, "x1", "A", seed.tls_addr, node=stranger)
    try:
        poll(
            lambda: "TLS to peer failed" in intruder.server.log_text(),
            10,
            "the intruder's log line",
        )
        poll(
            lambda: (
                "unknown ca" in seed.server.log_text()
                or "certificate verify failed" in seed.server.log_text()
            ),
            10,
            "the seed's log line",
        )
        assert "x1" not in states(seed.server)
        assert "Traceback" not in seed.server.log_text()
        with tls_redis(seed, certs) as r:
            assert r.ping()
    finally:
        intruder.server.stop()


def test_a_peer_whose_certificate_names_another_host_is_refused_by_whoever_dials_it(
    members: dict[str, TlsMember], certs: Certs, tmp_path: Path
) -> None:
    """Client certificates carry no name check, so the node gets in; but a member that
    dials it back (membership probes it) finds the certificate is not for its address."""
    elsewhere = certs.issue("elsewhere", "other.example")
    seed = members["a1"]
    odd = start_member(tmp_path, certs, "y1", "A", seed.tls_addr, node=elsewhere)
    try:
        poll(
            lambda: any(
                "TLS to peer failed" in line and "mismatch" in line
                for m in members.values()
                for line in m.server.log_text().splitlines()
            ),
            15,
            "a member's log line about the name",
        )
        with tls_redis(seed, certs) as r:
            assert r.ping()
    finally:
        odd.server.stop()
