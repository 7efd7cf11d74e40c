"""Wrong passwords against a real node process: held replies, a closed connection, counts.

A client guessing the password gets each WRONGPASS later than the one before and the
connection closed after `--auth-max-failures` in a row, however many guesses it
pipelines; a user who mistypes once waits 10 ms; every failure is counted in INFO and
/metrics and logged (rate-limited); RESET works before AUTH, as in Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from support import RawClient, start_geocache

pytestmark = pytest.mark.geocache_only

PASSWORD = "pw-s3cret"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def test_guessing_is_slowed_then_cut_off_and_counted(tmp_path: Path) -> None:
    node = start_geocache(
        tmp_path, ["--requirepass", PASSWORD, "--auth-max-failures", "4", "--log-level", "warning"]
    )
    try:
        with RawClient(node.host, node.port) as raw:
            started = time.monotonic()
            # 50 guesses pipelined in one write: only 4 are ever answered.
            raw.send_many([("AUTH", f"guess-{i}") for i in range(50)])
            replies = raw.read_replies(4)
            elapsed = time.monotonic() - started
            assert replies == [WRONGPASS] * 4
            assert raw.is_closed_by_peer()
        # Held 10, 20, 40 and 80 ms: each after the one before, reading nothing meanwhile.
        assert elapsed >= 0.150
        with RawClient(node.host, node.port) as raw:
            assert raw.call("RESET") == b"+RESET\r\n"  # before AUTH, as in Redis
            assert raw.call("GET", "k").startswith(b"-NOAUTH")
            started = time.monotonic()
            assert raw.call("AUTH", "typo") == WRONGPASS
            assert raw.call("AUTH", PASSWORD) == b"+OK\r\n"
            assert time.monotonic() - started < 1.0  # one mistake costs little
        with redis.Redis(node.host, node.port, password=PASSWORD, socket_timeout=5) as c:
            info = c.info("geocache")
        assert info["auth_failures"] == 5 and info["auth_disconnects"] == 1
        assert "authentication failed" in node.log_text()
    finally:
        node.stop()
