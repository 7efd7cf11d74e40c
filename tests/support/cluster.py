"""Regions of real geocache processes for tests: start, restart at a port, inspect, wait."""

from __future__ import annotations

import signal
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import redis

from geocache import auth

from .procs import (
    REPO_ROOT,
    ServerProcess,
    _spawn,
    geocache_argv,
    geocache_env,
    start_geocache,
    wait_ready,
)

SECRET = "test-secret"


def poll(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait until `check()` holds, or fail saying what did not happen in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def cluster_args(
    node_id: str, seed: str | None, *extra: str, log_level: str = "warning"
) -> list[str]:
    args = ["--node-id", node_id, "--cluster-secret", SECRET, "--log-level", log_level]
    if seed:
        args += ["--seeds", seed]
    return args + list(extra)


def start_at(port: int, tmp: Path, args: list[str]) -> ServerProcess:
    """A node on a given port (a restart keeps its address)."""
    server = _spawn(
        "geocache",
        geocache_argv(port, args),
        port,
        tmp / f"node-{port}-{time.monotonic_ns()}.log",
        cwd=REPO_ROOT,
        env=geocache_env(),
    )
    wait_ready(server)
    return server


def client(server: ServerProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5, **server.client_tls)


def prove_peer(
    call: Callable[..., object], name: str, secret: str = SECRET, binding: bytes = b""
) -> object:
    """Run the client's side of the peer handshake (auth.py) through `call(*argv)`, as
    the peer `name`: check the server's proof, then send this side's (`binding`: the TLS
    connection's channel binding, when it is one). Returns the reply to GC.AUTH (OK when
    the server accepted it)."""
    nonce = auth.new_nonce()
    hello = call("GC.HELLO", name, nonce)
    assert isinstance(hello, list) and len(hello) == 3, hello
    server_id, server_nonce, server_proof = (bytes(x) for x in hello)
    transcript = auth.Transcript(name, server_id.decode(), nonce, server_nonce, binding)
    assert auth.verify(secret, auth.SERVER_TO_CLIENT, transcript, server_proof)
    return call("GC.AUTH", auth.proof(secret, auth.CLIENT_TO_SERVER, transcript))


def peer_client(server: ServerProcess) -> redis.Redis:
    """A client whose connection proved the cluster secret, as a peer named `tester`
    (over TLS, the proof bound to the connection, as nodes bind theirs). The proof holds
    for that one connection: the pool hands it out again to the client's commands and
    pipelines, used one at a time."""
    c = client(server)
    pool = c.connection_pool
    conn = pool.get_connection()
    try:
        sock = getattr(conn, "_sock", None)
        binding = (
            sock.get_channel_binding("tls-unique") if isinstance(sock, ssl.SSLSocket) else None
        )

        def call(*argv: object) -> object:
            conn.send_command(*argv)  # type: ignore[no-untyped-call]
            return conn.read_response()

        assert prove_peer(call, "tester", binding=binding or b"")
    finally:
        pool.release(conn)
    return c


def states(server: ServerProcess) -> dict[str, str]:
    """Member id -> state, as this node sees the cluster."""
    with client(server) as c:
        topology = c.execute_command("GC.TOPOLOGY")
    result = {}
    for item in topology:
        record = item if isinstance(item, dict) else dict(zip(item[::2], item[1::2], strict=True))
        result[record[b"id"].decode()] = record[b"state"].decode()
    return result


def all_alive(server: ServerProcess, size: int) -> bool:
    """True when `server` sees `size` members alive."""
    return list(states(server).values()).count("alive") == size


@contextmanager
def running_region(
    tmp: Path, size: int = 3, extra: Sequence[str] = ()
) -> Iterator[list[ServerProcess]]:
    """`size` nodes n1..nN joined through n1, all seeing each other alive, each with the
    flags in `extra`; stopped after (a node a test froze with SIGSTOP is thawed first,
    or it could not stop)."""
    first = start_geocache(tmp, cluster_args("n1", None, *extra))
    seed = f"127.0.0.1:{first.port}"
    nodes = [first]
    try:
        nodes += [
            start_geocache(tmp, cluster_args(f"n{i}", seed, *extra)) for i in range(2, size + 1)
        ]
        for node in nodes:
            poll(partial(all_alive, node, size), 15, f"{size} alive")
        yield nodes
    finally:
        for node in nodes:
            if node.is_running():
                node.proc.send_signal(signal.SIGCONT)
            node.stop()
