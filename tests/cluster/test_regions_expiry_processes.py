"""Issue 21 on real processes: an expiry write never undoes a SET across regions.

Regions A (a1, a2) and B (b1, b2) reach each other through delay relays, 50 ms each way
(100 ms apart). For each key: SET k v1 everywhere; then SET k v2 acknowledged at a1 and,
10 ms later, an expiry write (or SET KEEPTTL) at b1, which has not yet seen v2. Once
the regions agree, every node must read the newer value with the expiry the later write
gave it. 20 keys per command, one after another (a few ms apart), checked together.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support.cluster import client, peer_client, poll
from support.procs import ServerProcess

from .test_regions_partition import regions_through_relays

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUNS = 20
GAP_S = 0.010  # the expiry write follows the SET by 10 ms: B has not seen v2 yet
ONE_WAY_MS = 50


@dataclass(frozen=True)
class Case:
    name: str
    setup_ttl_s: int  # v1's TTL (0: none)
    v2_ttl_s: int  # v2's TTL (0: none)
    command: tuple[str, ...]  # at b1, with {k} for the key
    value: str  # what every node must read at the end
    ttl: tuple[int, int]  # TTL bounds in seconds (-1, -1: none)


CASES = [
    Case("EXPIRE", 0, 0, ("EXPIRE", "{k}", "1000"), "v2", (990, 1000)),
    Case("PEXPIRE", 0, 0, ("PEXPIRE", "{k}", "1000000"), "v2", (990, 1000)),
    Case("PERSIST", 500, 300, ("PERSIST", "{k}"), "v2", (-1, -1)),
    Case("GETEX EX", 0, 0, ("GETEX", "{k}", "EX", "1000"), "v2", (990, 1000)),
    # The value write is the later one: its value, and v2's expiry (v1's was kept at B).
    Case("SET KEEPTTL", 500, 0, ("SET", "{k}", "v3", "KEEPTTL"), "v3", (-1, -1)),
]


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("expiry-regions")
    with regions_through_relays(tmp, one_way_ms=ONE_WAY_MS) as (nodes, _relays):
        yield nodes


def fetched(node: ServerProcess, key: str) -> object:
    with peer_client(node) as p:
        return p.execute_command("GC.FETCH", key)


def held(node: ServerProcess, key: str) -> object:
    """What `node` holds for `key`, a tombstone's creation time (its own clock) left out."""
    record = fetched(node, key)
    if isinstance(record, list) and isinstance(record[0], int):
        del record[2]
    return repr(record)


def agree(nodes: dict[str, ServerProcess], keys: list[str]) -> bool:
    return all(len({held(n, k) for n in nodes.values()}) == 1 for k in keys)


def run_case(nodes: dict[str, ServerProcess], case: Case, keys: list[str]) -> int:
    """The scenario on every key; how many ended right on every node."""
    with client(nodes["a1"]) as a:
        for k in keys:
            assert a.set(k, "v1", ex=case.setup_ttl_s or None)
    poll(lambda: all(fetched(n, k) for n in nodes.values() for k in keys), 10, "v1 everywhere")
    with client(nodes["a1"]) as a, client(nodes["b1"]) as b:
        for k in keys:
            assert a.set(k, "v2", ex=case.v2_ttl_s or None)  # acknowledged in A
            time.sleep(GAP_S)
            reply = b.execute_command(*(arg.format(k=k) for arg in case.command))
            assert reply in (1, True, b"OK", b"v1"), reply  # b1 still had v1
    poll(lambda: agree(nodes, keys), 15, "both regions agree")
    right = 0
    for k in keys:
        reads = set()
        for node in nodes.values():
            with client(node) as c:
                reads.add((c.get(k), c.ttl(k)))
        lo, hi = case.ttl  # read a moment apart, nodes may round the same expiry 1 s apart
        if all(value == case.value.encode() and lo <= ttl <= hi for value, ttl in reads):
            right += 1
        else:
            print(k, reads, [held(n, k) for n in nodes.values()])
    return right


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_newer_value_survives_an_expiry_write_made_where_it_had_not_arrived(
    regions: dict[str, ServerProcess], case: Case
) -> None:
    keys = [f"x:{case.name.replace(' ', '-')}:{i}" for i in range(RUNS)]
    right = run_case(regions, case, keys)
    print(f"{case.name}: {right} of {RUNS}")
    assert right == RUNS


def test_expire_zero_is_a_delete_and_the_later_of_it_and_a_set_wins(
    regions: dict[str, ServerProcess],
) -> None:
    """EXPIRE k 0 deletes (as Redis): against a SET made elsewhere, the later one wins."""
    with client(regions["a1"]) as a:
        for k in ("z:set-first", "z:expire-first"):
            a.set(k, "v1")
    poll(lambda: all(fetched(n, "z:expire-first") for n in regions.values()), 10, "v1")
    with client(regions["a1"]) as a, client(regions["b1"]) as b:
        assert a.set("z:set-first", "v2")
        time.sleep(GAP_S)
        assert b.expire("z:set-first", 0)  # the later: deletes v2 too, everywhere
        assert b.expire("z:expire-first", 0)
        time.sleep(GAP_S)
        assert a.set("z:expire-first", "v2")  # the later: v2 lives everywhere
    keys = ["z:set-first", "z:expire-first"]
    poll(lambda: agree(regions, keys), 15, "both regions agree")
    for node in regions.values():
        with client(node) as c:
            assert c.get("z:set-first") is None
            assert c.get("z:expire-first") == b"v2" and c.ttl("z:expire-first") == -1
