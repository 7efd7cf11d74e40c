"""Untrusted input at the edges: wrong passwords, origin keys that look like paths, and
HTTP keys with broken percent escapes. The node is built, never started: no sockets."""

from __future__ import annotations

import pytest

from geocache.clock import ManualClock
from geocache.commands.connection import AUTH_DELAY_MAX_MS, AUTH_DELAY_MS, WRONGPASS
from geocache.commands.context import Session
from geocache.commands.table import NOAUTH, dispatch
from geocache.config import NodeConfig
from geocache.origin.loaders import HttpLoader, encode_key
from geocache.protocol.types import OK, Simple
from geocache.server.http import _BAD_ESCAPE
from geocache.server.node import Node


def node(**settings: object) -> Node:
    return Node(NodeConfig(requirepass="pw", **settings), clock=ManualClock())  # type: ignore[arg-type]


def test_each_wrong_password_in_a_row_is_held_longer_and_the_limit_closes() -> None:
    n = node(auth_max_failures=4)
    session = Session(n, 1)
    holds = []
    for _ in range(3):
        assert dispatch(n.table, session, [b"AUTH", b"nope"]) == WRONGPASS
        holds.append(session.hold_ms)
        session.hold_ms = 0  # what the server does once it held the reply
        assert not session.closing
    assert holds == [AUTH_DELAY_MS, 2 * AUTH_DELAY_MS, 4 * AUTH_DELAY_MS]
    assert dispatch(n.table, session, [b"HELLO", b"3", b"AUTH", b"default", b"x"]) == WRONGPASS
    assert session.closing and session.auth_failures == 4


def test_the_hold_is_capped_and_a_right_password_starts_over() -> None:
    n = node(auth_max_failures=100)
    session = Session(n, 1)
    for _ in range(30):
        dispatch(n.table, session, [b"AUTH", b"nope"])
    assert session.hold_ms == AUTH_DELAY_MAX_MS
    assert dispatch(n.table, session, [b"AUTH", b"pw"]) == OK
    assert session.auth_failures == 0
    dispatch(n.table, session, [b"AUTH", b"nope"])
    assert session.hold_ms == AUTH_DELAY_MS


def test_reset_runs_before_auth_as_in_redis() -> None:
    n = node()
    session = Session(n, 1)
    assert dispatch(n.table, session, [b"GET", b"k"]) == NOAUTH
    assert dispatch(n.table, session, [b"RESET"]) == Simple("RESET")
    assert not session.authenticated
    assert dispatch(n.table, session, [b"AUTH", b"pw"]) == OK
    assert dispatch(n.table, session, [b"RESET"]) == Simple("RESET")
    assert not session.authenticated  # RESET signs the connection out again


@pytest.mark.parametrize(
    ("key", "segment"),
    [
        (b"..", "%2E%2E"),
        (b".", "%2E"),
        (b"...", "..."),  # not a dot-segment: unchanged
        (b"a..b", "a..b"),
        (b"%2e%2e", "%252e%252e"),
        (b"../etc", "..%2Fetc"),  # one segment: the slash is escaped
        (b"a/b?c#d", "a%2Fb%3Fc%23d"),
    ],
)
def test_origin_keys_stay_one_literal_segment(key: bytes, segment: str) -> None:
    assert encode_key(key) == segment
    loader = HttpLoader("http://origin.test/v1/items/{key}", 1, 1024)
    url = loader.url(key)
    assert url.raw_path == "/v1/items/" + segment
    assert not {".", ".."} & set(url.raw_path.split("/"))


@pytest.mark.parametrize("raw", ["%zz", "a%2", "%", "%%41", "x%g1"])
def test_a_percent_without_two_hex_digits_is_a_bad_key(raw: str) -> None:
    assert _BAD_ESCAPE.search(raw)


@pytest.mark.parametrize("raw", ["%25zz", "%2F", "plain", "a%41b%ff", ""])
def test_well_formed_escapes_pass(raw: str) -> None:
    assert not _BAD_ESCAPE.search(raw)
