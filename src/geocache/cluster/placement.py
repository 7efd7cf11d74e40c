"""Placement: which nodes of a region own a key, by rendezvous (highest-random-weight) hashing.

Each (key, node id) pair gets a 64-bit weight from xxhash; a key's owners are the
`replicas` alive members of the region with the largest weights, the first being the
primary. Adding or removing a node moves only the keys it gains or loses, and every
node computes the same owners from the same membership, with no ring to agree on.

Cost is O(members) hashes per key; regions are small (tens of nodes), and the node
caches nothing, so membership changes take effect on the next lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

from geocache.cluster.digest import bucket_of, bucket_token

_hash = xxhash.xxh3_64_intdigest


def weight(key: bytes, node_id: str) -> int:
    return _hash(key, seed=_seed(node_id))


_SEEDS: dict[str, int] = {}


def _seed(node_id: str) -> int:
    seed = _SEEDS.get(node_id)
    if seed is None:
        seed = _SEEDS[node_id] = xxhash.xxh64_intdigest(node_id.encode())
    return seed


def owners(key: bytes, members: Sequence[str], replicas: int) -> list[str]:
    """The `replicas` members owning `key`, primary first."""
    if replicas >= len(members):
        return sorted(members, key=lambda m: weight(key, m), reverse=True)
    ranked = sorted(members, key=lambda m: weight(key, m), reverse=True)
    return ranked[:replicas]


def key_owners(key: bytes, members: Sequence[str], replicas: int) -> list[str]:
    """The owners of `key`: those of its digest bucket, so that two owners of a key hold
    the same bucket and repair can compare whole buckets (repair.py). Clients route with
    this too."""
    return owners(bucket_token(bucket_of(key)), members, replicas)


def primary(key: bytes, members: Sequence[str]) -> str | None:
    """The member with the largest weight for `key`, or None with no members."""
    return max(members, key=lambda m: weight(key, m), default=None)
