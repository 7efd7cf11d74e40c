"""Issue 15 in a region of real node processes: abuse must not split the region.

Bounds as in test_client_abuse.py: RSS under 3 x max-bytes + 100 MB, a bystander's
PING under 250 ms (the issue's 100 ms, with room for this shared 2-core machine; the
worst measured is printed with -s), no member ever seen suspect or dead by another
(where no node really stops), and every acknowledged write readable after.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from support.abuse import MB, Bystander, RssPeak, closed_count, idle_connections, wait_for
from support.cluster import cluster_args, poll, prove_peer, running_region
from support.procs import ServerProcess, start_geocache
from support.resp import RawClient, decode, encode_command

MAX_BYTES = 64 * MB
RSS_BOUND_BYTES = 3 * MAX_BYTES + 100 * MB
PING_BOUND_MS = 250.0


def raw_peer(server: ServerProcess) -> RawClient:
    """A raw connection that proved the cluster secret (redis-py would first send
    CLIENT SETINFO, which a connection at the peer door may not)."""
    c = server.raw()

    def call(*argv: bytes | str | int) -> object:
        reply = decode(c.call(*argv))
        if isinstance(reply.value, tuple):
            return [item.value for item in reply.items]
        return reply.value

    try:
        assert prove_peer(call, "tester") == b"OK"
    except BaseException:
        c.close()  # a failed handshake must not leave its socket to the next test
        raise
    return c


def member_states(server: ServerProcess) -> dict[str, str]:
    """Member id -> state, asked as a peer (the peer door is open when clients' is full)."""
    with raw_peer(server) as c:
        topology = decode(c.call("GC.TOPOLOGY"))
    result = {}
    for item in topology.items:
        fields = [f.value for f in item.items]
        record = dict(zip(fields[::2], fields[1::2], strict=True))
        result[str(record[b"id"], "utf-8")] = str(record[b"state"], "utf-8")
    return result


def info_field(c: RawClient, section: str, name: str) -> int:
    for line in c.call("INFO", section).decode().splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    raise KeyError(name)


def watch_membership(nodes: list[ServerProcess], seconds: float) -> list[str]:
    """Every (observer, member, state) seen that is not alive, polled for `seconds`."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, node in enumerate(nodes):
            for member, state in member_states(node).items():
                if state != "alive":
                    seen.append(f"n{i + 1} saw {member} {state}")
        time.sleep(0.2)
    return seen


@pytest.mark.slow
def test_idle_strangers_at_max_clients_do_not_keep_peers_apart(tmp_path: Path) -> None:
    """20 idle connections fill each node's client door; peers still join and stay
    joined through their own door; a stranger at the peer door that never proves
    the secret is closed after the auth timeout."""
    extra = ["--max-clients", "20", "--auth-timeout-s", "1", "--max-bytes", "64mb"]
    first = start_geocache(tmp_path, cluster_args("n1", None, *extra))
    nodes = [first]
    strangers: list[socket.socket] = []
    try:
        strangers += idle_connections(first.port, 20)
        seed = f"127.0.0.1:{first.port}"
        for name in ("n2", "n3"):
            # A new node joins through a seed whose client door is full.
            nodes.append(start_geocache(tmp_path, cluster_args(name, seed, *extra)))
            strangers += idle_connections(nodes[-1].port, 19)  # wait_ready's PING left
        for node in nodes:
            poll(lambda n=node: list(member_states(n).values()).count("alive") == 3, 15, "3 up")
        # A stranger let in at the peer door that never proves the secret is closed.
        probation = idle_connections(first.port, 3)
        strangers += probation
        assert wait_for(lambda: closed_count(probation) == 3, 5)
        assert watch_membership(nodes, 4.0) == []
        with raw_peer(first) as c:
            # At least n2's and n3's data channels, and this one.
            assert info_field(c, "clients", "peer_connections") >= 3
            assert info_field(c, "stats", "refused_auth_timeout") >= 3
        for s in strangers[:20]:
            s.close()
        time.sleep(0.2)
        with redis.Redis(port=first.port, socket_timeout=5) as c:
            for i in range(50):
                assert c.set(f"k{i}", f"v{i}")  # forwarded to the other primaries
            assert c.mget([f"k{i}" for i in range(50)]) == [f"v{i}".encode() for i in range(50)]
    finally:
        for s in strangers:
            s.close()
        for node in nodes:
            node.stop()


@pytest.mark.slow
def test_a_pipeline_of_mgets_of_10000_keys_stalls_nobody(tmp_path: Path) -> None:
    keys = [f"key:{i}" for i in range(10_000)]
    with running_region(tmp_path, 3, ["--max-bytes", "64mb"]) as nodes:
        n1 = nodes[0]
        with redis.Redis(port=n1.port, socket_timeout=30) as c:
            for start in range(0, len(keys), 2000):
                chunk = keys[start : start + 2000]
                assert c.mset({k: k.upper() for k in chunk})
            too_many = [f"x{i}" for i in range(10_001)]
            with pytest.raises(redis.ResponseError, match="max-keys-per-command"):
                c.exists(*too_many)
        # A raw client: redis-py would spend the shared cores decoding 200,000 values
        # while the bystander is timed (decoded after, below).
        with n1.raw(timeout_s=60) as raw:
            with RssPeak(n1.pid) as rss, Bystander(n1.port) as bystander:
                started = time.monotonic()
                raw.send_raw(encode_command(["MGET", *keys]) * 20)
                replies = raw.read_replies(20)
                elapsed = time.monotonic() - started
            assert raw.call("EXISTS", *keys) == b":10000\r\n"
        # 100,000 keys (the 74 s EXISTS): refused as its header arrives.
        with n1.raw() as raw:
            raw.send_raw(encode_command(["EXISTS", *(f"x{i}" for i in range(100_000))])[:4096])
            assert raw.read_until_closed() == b"-ERR Protocol error: invalid multibulk length\r\n"
        print(
            f"\n20 MGETs of 10,000 keys in {elapsed:.1f} s: peak RSS {rss.peak / MB:.0f} MB,"
            f" worst PING {bystander.worst_ms:.1f} ms"
        )
        expected = [k.upper().encode() for k in keys]
        assert all([item.value for item in decode(r).items] == expected for r in replies)
        assert bystander.failures == [] and bystander.worst_ms < PING_BOUND_MS
        assert rss.peak < RSS_BOUND_BYTES
        assert watch_membership(nodes, 1.0) == []


@pytest.mark.slow
def test_a_replica_that_hangs_under_big_writes_costs_bounded_hints(tmp_path: Path) -> None:
    """n2 stops (SIGSTOP: it accepts replication and never acknowledges) for 6 s while
    n1 takes 1 MB writes to 40 keys; n1 stays bounded, and once n2 is back every
    acknowledged write reaches it (hints, repair for what was dropped)."""
    extra = ["--max-bytes", "64mb", "--max-hint-bytes", "32mb"]
    with running_region(tmp_path, 2, extra) as (n1, n2):
        acked: dict[str, bytes] = {}
        rng = random.Random(15)
        with redis.Redis(port=n1.port, socket_timeout=10) as c:
            with RssPeak(n1.pid) as rss, Bystander(n1.port) as bystander:
                n2.proc.send_signal(signal.SIGSTOP)
                try:
                    deadline = time.monotonic() + 6.0
                    seq = 0
                    while time.monotonic() < deadline:
                        key = f"big:{rng.randrange(40)}"
                        seq += 1
                        value = b"%08d" % seq + b"b" * (MB - 8)
                        if c.set(key, value):
                            acked[key] = value[:8]
                finally:
                    n2.proc.send_signal(signal.SIGCONT)
            info = c.info("memory")
        print(
            f"\n{seq} writes of 1 MB with a hung replica: peak RSS {rss.peak / MB:.0f} MB,"
            f" worst PING {bystander.worst_ms:.1f} ms, hint bytes {info['hint_bytes']}"
        )
        assert bystander.failures == [] and bystander.worst_ms < PING_BOUND_MS
        assert rss.peak < RSS_BOUND_BYTES

        def n2_has_every_acked_write() -> bool:
            with redis.Redis(port=n2.port, socket_timeout=10) as c2:
                return all((c2.getrange(k, 0, 7) or b"") == v for k, v in acked.items())

        poll(n2_has_every_acked_write, 30, "every acknowledged write at n2")


def test_the_fd_limit_is_raised_or_max_clients_lowered_to_fit() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))\n"
        "from geocache.server.limits import plan_fds\n"
        "p = plan_fds(10_000, 44)\n"
        "print(p.soft_limit, p.max_clients, p.lowered)\n"
        "try:\n"
        "    plan_fds(10, 300)\n"
        "except ValueError as e:\n"
        "    print('refused', 'ulimit' in str(e))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split("\n")
    assert out[0] == "400 100 True"  # 400 - 44 others - 256 reserve
    assert out[1] == "refused True"
