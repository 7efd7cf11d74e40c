"""The harness itself: namespaces, links, process control and clean-up do what they say.

A fault test that passes because its fault never happened would prove nothing, so each
mechanism is checked against its effect: a cut link stops TCP connections (and only
that link), a heal restores it, `close()` leaves no namespace, link or rule behind, a
SIGSTOPped node stops answering and answers again after SIGCONT, a restart with a clock
offset shifts the node's TIME, and the PID we signal is the node's own.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.resp import RawClient

from . import observe, wire
from .links import Links, rules
from .netns import Host, Network, run
from .nodes import PORT, Cluster, NodeSpec
from .runner import wait_until

pytestmark = [pytest.mark.usefixtures("fault_host"), pytest.mark.timeout(90)]

PROBE_PORT = 9000
# A listener needs a moment to bind after its process starts.
LISTEN_WAIT_S = 5.0


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network()
    net.create()
    try:
        yield net
    finally:
        net.close()


def listen(host: Host) -> subprocess.Popen[bytes]:
    """A TCP listener in a host's namespace (the kernel completes handshakes; no accept)."""
    code = (
        "import socket, time\n"
        "s = socket.socket()\n"
        f"s.bind(({host.addr!r}, {PROBE_PORT}))\n"
        "s.listen(64)\n"
        "time.sleep(60)\n"
    )
    return subprocess.Popen(host.exec_argv([sys.executable, "-c", code]))


def connects(src: Host, dst: Host) -> bool:
    """Whether a TCP connection from src's namespace to dst completes within 0.5 s."""
    code = f"import socket; socket.create_connection(({dst.addr!r}, {PROBE_PORT}), timeout=0.5)"
    done = run(src.exec_argv([sys.executable, "-c", code]), check=False)
    return done.returncode == 0


def test_links_cut_one_way_both_ways_and_heal(network: Network) -> None:
    a, b, c = (network.add_host(name) for name in ("a", "b", "c"))
    listeners = [listen(h) for h in (a, b, c)]
    try:
        assert wait_until(lambda: connects(a, b) and connects(b, c) and connects(c, a), 5)
        links = Links()
        links.cut(a, b)  # a's packets to b are dropped in b's namespace
        assert rules(b) == [f"-A INPUT -s {a.addr}/32 -j DROP"] and rules(a) == []
        assert not connects(a, b)
        assert not connects(b, a)  # one way cut, yet TCP breaks: a's SYN-ACK dies at b
        assert connects(a, c) and connects(c, b)
        links.cut_both(a, c)
        assert links.cuts == {("a", "b"), ("a", "c"), ("c", "a")}
        assert not connects(c, a) and not connects(a, c)
        assert connects(b, c) and connects(c, b)
        links.heal_all()
        assert links.cuts == set() and all(rules(h) == [] for h in (a, b, c))
        assert connects(a, b) and connects(b, a) and connects(a, c)
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait(5)


def test_close_removes_every_namespace_and_link() -> None:
    net = Network()
    net.create()
    net.add_host("x")
    net.add_host("y")
    assert len(net.leftovers()) >= 3  # hub, two nodes, host link
    assert net.close() == []
    assert net.leftovers() == []
    host_routes = run(["ip", "-4", "route", "show"]).stdout
    assert f"10.77.{net.octet}." not in host_routes


def test_two_networks_get_their_own_names_and_subnets() -> None:
    first, second = Network(), Network()
    first.create()
    try:
        second.create()
        try:
            assert first.tag != second.tag and first.octet != second.octet
        finally:
            second.close()
    finally:
        first.close()


def node_time_ms(addr: str) -> int:
    with wire.connect(addr, PORT, 5.0) as conn:
        reply = wire.call(conn, "TIME")
    assert isinstance(reply, list)
    seconds, micros = (int(x) for x in reply)
    return seconds * 1000 + micros // 1000


def answers_ping(addr: str, timeout_s: float) -> bool:
    try:
        with RawClient(addr, PORT, timeout_s=timeout_s) as conn:
            return conn.call("PING") == b"+PONG\r\n"
    except OSError:
        return False


def test_nodes_are_killed_paused_and_skewed_by_their_own_pid(
    network: Network, tmp_path: Path
) -> None:
    cluster = Cluster(network, [NodeSpec("n1"), NodeSpec("n2"), NodeSpec("n3")], tmp_path)
    try:
        cluster.start_all()
        nodes = list(cluster.nodes.values())
        assert wait_until(lambda: observe.membership_settled(nodes), 30)
        n1, n2, n3 = nodes
        assert n1.server is not None
        cmdline = Path(f"/proc/{n1.server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"geocache" in cmdline and b"serve" in cmdline  # ip netns exec exec'd in place

        cluster.pause(n2)
        assert not answers_ping(n2.addr, 0.5)
        cluster.resume(n2)
        assert answers_ping(n2.addr, 5.0)

        cluster.kill(n3)
        assert not n3.running and not answers_ping(n3.addr, 0.5)
        before = time.time_ns() // 1_000_000
        cluster.restart(n3, clock_offset_ms=60_000)
        skew = node_time_ms(n3.addr) - before
        assert 59_000 < skew < 70_000, f"TIME of the skewed node is {skew} ms ahead"
        assert abs(node_time_ms(n1.addr) - time.time_ns() // 1_000_000) < 5_000
    finally:
        cluster.stop_all()
    assert all(not n.running for n in cluster.nodes.values())
