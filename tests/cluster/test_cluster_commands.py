"""Issue 18's commands in a 3-node region: two-key commands across owners, SELECT, and
internal commands hidden from clients."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from support import decode
from support.cluster import client, peer_client, running_region

# redis-py drops the error code (CROSSSLOT) from the message.
CROSSSLOT = "Keys in request don't hash to the same slot"


def _owners(c: redis.Redis, key: str) -> tuple[bytes, ...]:
    return tuple(c.execute_command("GC.OWNERS", key))


def _pairs(c: redis.Redis) -> tuple[str, str, str]:
    """`a`, a key with the same owners as `a`, and one with other owners."""
    a = "k:0"
    same = other = None
    for i in range(1, 500):
        key = f"k:{i}"
        if _owners(c, key) == _owners(c, a):
            same = same or key
        else:
            other = other or key
    assert same is not None and other is not None
    return a, same, other


@pytest.mark.slow
def test_two_key_commands_need_the_same_owners(tmp_path: Path) -> None:
    with running_region(tmp_path) as nodes:
        first = client(nodes[0])
        a, same, other = _pairs(first)
        first.set(a, "v", ex=100)
        with pytest.raises(redis.ResponseError, match=CROSSSLOT):
            first.execute_command("RENAME", a, other)
        with pytest.raises(redis.ResponseError, match=CROSSSLOT):
            first.execute_command("COPY", a, other)
        with pytest.raises(redis.ResponseError, match=CROSSSLOT):
            first.execute_command("LCS", a, other)
        for node in nodes:  # any node answers, forwarding to the coordinator
            c = client(node)
            assert c.execute_command("COPY", a, same, "REPLACE") == 1
            assert c.execute_command("RENAME", same, a)
            assert c.execute_command("RENAMENX", a, same) == 1
            assert c.execute_command("RENAME", same, a)
        assert 0 < first.ttl(a) <= 100
        # Every owner holds the renamed key, and the old name as a delete at the same
        # version (one event).
        holders = 0
        for node in nodes:
            peer = peer_client(node)
            held = peer.execute_command("GC.FETCH", a)
            if held is None:  # not an owner of these keys
                continue
            holders += 1
            gone = peer.execute_command("GC.FETCH", same)
            assert held[0] == b"v"
            assert gone is not None and len(gone) == 3 and gone[0] == held[2]
        assert holders == 2  # --replicas 2


@pytest.mark.slow
def test_select_keyless_subcommands_and_hidden_commands(tmp_path: Path) -> None:
    with running_region(tmp_path, size=2) as nodes:
        c = client(nodes[0])
        with pytest.raises(redis.ResponseError, match="SELECT is not allowed in cluster mode"):
            c.execute_command("SELECT", 1)
        assert c.execute_command("SELECT", 0)
        assert c.execute_command("OBJECT", "HELP")[0].startswith(b"OBJECT <subcommand>")
        assert c.execute_command("MEMORY", "USAGE", "nokey") is None
        with nodes[0].raw() as raw:
            names = [r.value for r in decode(raw.call("COMMAND", "LIST")).items]
            assert b"get" in names and not [n for n in names if n.startswith(b"gc.")]
            assert raw.call("COMMAND", "INFO", "gc.fwd") == b"*1\r\n$-1\r\n"
