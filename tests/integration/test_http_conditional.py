"""Conditional PUT and DELETE over HTTP: If-Match and If-None-Match against the ETag.

Run against a lone node (the store, checked and written with no await between) and a
node in cluster mode (GETVER, then CAS on that version through the router), which must
answer alike. Plus the unit cases of the header rules (conditional.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from geocache.server.conditional import Preconditions
from integration.test_http import HttpNode, key_path, start_http_node

pytestmark = pytest.mark.geocache_only


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpNode]:
    args = ["--cluster-secret", "s3cret"] if request.param == "cluster" else []
    started = start_http_node(tmp_path_factory.mktemp(f"cond-{request.param}"), *args)
    yield started
    started.server.stop()


def put(node: HttpNode, key: bytes, value: bytes, **headers: str) -> tuple[int, str | None]:
    reply = node.request("PUT", key_path(key), value, _headers(headers))
    return reply.status, reply.headers.get("etag")


def delete(node: HttpNode, key: bytes, **headers: str) -> int:
    return node.request("DELETE", key_path(key), headers=_headers(headers)).status


def _headers(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in headers.items()}


def test_if_match_is_compare_and_set(node: HttpNode) -> None:
    status, etag = put(node, b"cas", b"v1")
    assert status == 201 and etag
    status, newer = put(node, b"cas", b"v2", If_Match=etag)
    assert status == 204 and newer and newer != etag
    stale = node.request("PUT", key_path(b"cas"), b"v3", {"If-Match": etag})
    assert stale.status == 412 and "precondition" in stale.error()
    assert stale.headers["etag"] == newer  # what it is now
    assert node.request("GET", key_path(b"cas")).body == b"v2"  # the stale write lost
    assert put(node, b"cas", b"v4", If_Match=f'"1", {newer}')[0] == 204  # one of a list
    assert put(node, b"cas", b"v5", If_Match=f"W/{etag}")[0] == 412  # weak never matches


def test_if_match_star_needs_the_key_and_if_none_match_star_its_absence(node: HttpNode) -> None:
    assert put(node, b"star", b"x", If_Match="*")[0] == 412
    assert node.request("GET", key_path(b"star")).status == 404
    status, etag = put(node, b"star", b"first", If_None_Match="*")
    assert status == 201 and etag
    assert put(node, b"star", b"second", If_None_Match="*") == (412, etag)
    assert node.request("GET", key_path(b"star")).body == b"first"
    assert put(node, b"star", b"third", If_Match="*")[0] == 204
    assert put(node, b"star", b"fourth", If_None_Match='"1"')[0] == 204  # not that version


def test_conditional_put_keeps_the_ttl(node: HttpNode) -> None:
    _, etag = put(node, b"ttl", b"a")
    assert etag
    reply = node.request("PUT", key_path(b"ttl", "ttl=60"), b"b", {"If-Match": etag})
    assert reply.status == 204
    ttl_ms = int(node.request("GET", key_path(b"ttl")).headers["x-geocache-ttl-ms"])
    assert 50_000 < ttl_ms <= 60_000


def test_conditional_delete(node: HttpNode) -> None:
    _, etag = put(node, b"del", b"a")
    _, newer = put(node, b"del", b"b")
    assert etag and newer
    assert delete(node, b"del", If_Match=etag) == 412
    assert delete(node, b"del", If_None_Match="*") == 412
    assert node.request("GET", key_path(b"del")).body == b"b"
    assert delete(node, b"del", If_Match=newer) == 204
    assert delete(node, b"del", If_Match="*") == 412  # gone: nothing matches
    assert delete(node, b"del", If_None_Match="*") == 404  # absent, as asked: nothing to do


def test_only_one_of_racing_conditional_writes_wins(node: HttpNode) -> None:
    _, etag = put(node, b"race", b"start")
    assert etag
    statuses: list[int] = []

    def attempt(i: int) -> None:
        statuses.append(put(node, b"race", b"writer-%d" % i, If_Match=etag)[0])

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [204] + [412] * 7
    assert node.request("GET", key_path(b"race")).body.startswith(b"writer-")


@pytest.mark.parametrize(
    ("headers", "etag", "holds"),
    [
        ({}, None, True),
        ({}, '"5"', True),
        ({"If-Match": '"5"'}, '"5"', True),
        ({"If-Match": '"4", "5"'}, '"5"', True),
        ({"If-Match": '"4"'}, '"5"', False),
        ({"If-Match": '"5"'}, None, False),
        ({"If-Match": "*"}, '"5"', True),
        ({"If-Match": "*"}, None, False),
        ({"If-Match": 'W/"5"'}, '"5"', False),
        ({"If-Match": ""}, '"5"', False),
        ({"If-None-Match": "*"}, None, True),
        ({"If-None-Match": "*"}, '"5"', False),
        ({"If-None-Match": '"5"'}, '"5"', False),
        ({"If-None-Match": 'W/"5"'}, '"5"', False),
        ({"If-None-Match": '"4"'}, '"5"', True),
        ({"If-None-Match": '"4"'}, None, True),
        ({"If-Match": '"5"', "If-None-Match": '"5"'}, '"5"', False),
    ],
)
def test_header_rules(headers: dict[str, str], etag: str | None, holds: bool) -> None:
    assert Preconditions.parse(headers).holds(etag) is holds


def test_no_headers_no_preconditions() -> None:
    assert not Preconditions.parse({}).given
    assert Preconditions.parse({"If-Match": "*"}).given
