"""The process helper the tests and the benchmarks share (support/procs.py): servers
planned as a `ServerSpec` start together, and every one started is stopped by its PID,
also when another of them never serves."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import pytest

from support.procs import HOST, ServerSpec, ServerStartError, free_port, redis_argv, start_all


def redis_spec(tmp_path: Path, name: str) -> ServerSpec:
    port = free_port()
    return ServerSpec(name, redis_argv(port, tmp_path), port, tmp_path / f"{name}.log")


def test_start_all_starts_servers_and_the_stack_stops_them(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        servers = start_all(stack, [redis_spec(tmp_path, "a"), redis_spec(tmp_path, "b")])
        assert [s.kind for s in servers] == ["a", "b"]
        for server in servers:
            with server.raw() as client:
                assert client.call("PING") == b"+PONG\r\n"
    assert not any(s.is_running() for s in servers)


def test_a_server_that_never_serves_stops_the_ones_started_with_it(tmp_path: Path) -> None:
    good = redis_spec(tmp_path, "good")
    exits = [sys.executable, "-c", "raise SystemExit(3)"]
    broken = ServerSpec("broken", exits, free_port(), tmp_path / "broken.log")
    with contextlib.ExitStack() as stack, pytest.raises(ServerStartError, match="exited with 3"):
        start_all(stack, [good, broken])
    # `good` was spawned first and answered; the failed start stopped it, by its PID.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, good.port), timeout=1.0).close()


def test_a_stopped_server_stops_again_quietly(tmp_path: Path) -> None:
    server = redis_spec(tmp_path, "once").start()
    server.proc.kill()  # as bench/client.py SIGKILLs a node it started
    server.proc.wait()
    assert server.stop() == server.stop()
