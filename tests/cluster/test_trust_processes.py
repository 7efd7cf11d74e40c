"""Attacks on real node processes: fake members, forged versions, a wrong secret.

- A fake member takes the port of a member that crashed and plays, connection by
  connection, an attack on the nodes that dial it: it relays a node's handshake to
  another node, reflects it back to the node itself, or answers with a forged proof.
  Each fails on the dialing node before it sends anything but GC.HELLO, both sides log
  it, and no data changes.
- A proven peer sends versions at 2**63 and 2**64 - 1 (and past 64 bits) by every way in:
  refused, logged and counted; every write afterwards works, and so does a restart.
- A node with a wrong --cluster-secret is never ready, says why, and exits 1; with
  --allow-solo it serves alone and says so.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geocache import auth
from geocache.protocol.reader import RequestReader
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode, encode_command
from support import HOST, ServerProcess, free_port, start_geocache
from support.cluster import (
    SECRET,
    all_alive,
    client,
    cluster_args,
    peer_client,
    poll,
    start_at,
)

pytestmark = pytest.mark.geocache_only

# The join timeout (repair.JOIN_MAX_S, 10 s) and some room for a loaded machine (s).
JOIN_TIMEOUT_S = 10.0
EXIT_DEADLINE_S = JOIN_TIMEOUT_S + 20.0
IO_TIMEOUT_S = 5.0


# -- a fake member ----------------------------------------------------------------------


class _Conn:
    """A blocking RESP connection: commands out, replies (or commands) in."""

    def __init__(self, sock: socket.socket, server_side: bool) -> None:
        sock.settimeout(IO_TIMEOUT_S)
        self.sock = sock
        self._requests = RequestReader() if server_side else None
        self._replies = ReplyReader(incomplete=False) if not server_side else None

    @classmethod
    def dial(cls, port: int) -> _Conn:
        return cls(socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S), False)

    def call(self, *argv: bytes | str | int) -> object:
        self.sock.sendall(encode_command(*argv))
        assert self._replies is not None
        while (reply := self._replies.gets()) is False:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self._replies.feed(data)
        return reply

    def command(self) -> list[bytes] | None:
        """The next command the other side sends, or None when it closes or goes quiet."""
        assert self._requests is not None
        while (argv := self._requests.gets()) is False:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._requests.feed(data)
        return argv

    def close(self) -> None:
        self.sock.close()


class FakeMember:
    """Listens at a crashed member's port; plays `MODES` in turn, one per connection.

    relay: forwards the dialer's GC.HELLO to another node and that node's proof back.
    reflect: sends the dialer's GC.HELLO back to the dialer's own port (claiming its id),
      then as `mallory`, and forwards the dialer's own proof back to it.
    forged: answers with a proof made up without the secret.
    After each, whatever else the dialer sends is recorded (it must send nothing).
    """

    MODES = ("relay", "reflect", "forged")

    def __init__(self, port: int, ports: dict[str, int]) -> None:
        self.ports = ports  # node id -> RESP port
        self.played: dict[str, int] = dict.fromkeys(self.MODES, 0)
        self.after_hello: list[list[bytes]] = []
        self.injected: list[object] = []  # replies to GC.APPLY on unproven connections
        self.errors: list[str] = []
        self._next = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(IO_TIMEOUT_S)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        dialer = _Conn(sock, server_side=True)
        try:
            hello = dialer.command()
            if hello is None or hello[0].upper() != b"GC.HELLO":
                return
            with self._lock:
                mode = self.MODES[self._next % len(self.MODES)]
                self._next += 1
            getattr(self, "_" + mode)(dialer, hello[1].decode(), hello[2])
            dialer.sock.settimeout(1.0)
            while (argv := dialer.command()) is not None:
                self.after_hello.append(argv)
            with self._lock:
                self.played[mode] += 1
        except Exception as exc:  # a test thread: report, do not die silently
            self.errors.append(repr(exc))
        finally:
            dialer.close()

    def _answer(self, dialer: _Conn, reply: object) -> None:
        dialer.sock.sendall(encode(reply, 2))

    def _relay(self, dialer: _Conn, dialer_id: str, nonce: bytes) -> None:
        other = next(n for n in self.ports if n != dialer_id)
        upstream = _Conn.dial(self.ports[other])
        try:
            self._answer(dialer, upstream.call("GC.HELLO", dialer_id, nonce))
            self.injected.append(upstream.call("GC.APPLY", "guarded", "relayed", 0, 1, "evil"))
        finally:
            upstream.close()

    def _reflect(self, dialer: _Conn, dialer_id: str, nonce: bytes) -> None:
        back = _Conn.dial(self.ports[dialer_id])
        try:
            self.injected.append(back.call("GC.HELLO", dialer_id, nonce))  # its own id
        finally:
            back.close()
        back = _Conn.dial(self.ports[dialer_id])
        try:
            self._answer(dialer, back.call("GC.HELLO", "mallory", nonce))
            self.injected.append(back.call("GC.APPLY", "guarded", "reflected", 0, 1, "evil"))
        finally:
            back.close()

    def _forged(self, dialer: _Conn, dialer_id: str, nonce: bytes) -> None:
        self._answer(dialer, [b"n3", auth.new_nonce(), auth.new_nonce() * 2])


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """n1, n2, n3 joined and alive everywhere; stopped after."""
    first = start_geocache(tmp_path, cluster_args("n1", None))
    seed = f"{HOST}:{first.port}"
    nodes = [first]
    try:
        nodes += [start_geocache(tmp_path, cluster_args(n, seed)) for n in ("n2", "n3")]
        for node in nodes:
            poll(lambda node=node: all_alive(node, 3), 20, "3 alive")  # type: ignore[misc]
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_fake_members_relaying_reflecting_or_forging_proofs_get_nowhere(
    region: list[ServerProcess],
) -> None:
    n1, n2, n3 = region
    with client(n1) as c:
        assert c.set("guarded", "before")
    n3.proc.send_signal(signal.SIGKILL)
    n3.proc.wait(IO_TIMEOUT_S)
    fake = FakeMember(n3.port, {"n1": n1.port, "n2": n2.port})
    try:
        # n1 and n2 dial n3's address again (probes, then membership's retries).
        poll(lambda: all(fake.played.values()), 60, "every attack played")
    finally:
        fake.close()
    assert not fake.errors, fake.errors
    # The dialing nodes checked the proof first and sent nothing more: no GC.AUTH.
    assert fake.after_hello == []
    # What the fake sent on connections it never proved was refused.
    assert fake.injected and all(isinstance(r, Error) for r in fake.injected), fake.injected
    logs = n1.log_text() + n2.log_text()
    for reason in ("relayed?", "reflected?", "failed to prove the cluster secret"):
        assert reason in logs, reason
    assert "peer handshake refused" in logs  # the node the fake dialed logged it too
    assert "a peer claimed this node's own id" in logs
    failed = 0
    for node in (n1, n2):
        with client(node) as c:
            assert c.get("guarded") == b"before"
            failed += c.info("geocache")["cluster_peer_handshakes_failed"]
    assert failed >= len(FakeMember.MODES)


# -- versions ---------------------------------------------------------------------------

HUGE = [1 << 63, (1 << 64) - 1, 1 << 70]


def test_versions_from_the_far_future_are_refused_everywhere(tmp_path: Path) -> None:
    first = start_geocache(tmp_path, cluster_args("n1", None))
    seed = f"{HOST}:{first.port}"
    second = start_geocache(tmp_path, cluster_args("n2", seed))
    nodes = [first, second]
    try:
        for node in nodes:
            poll(lambda node=node: all_alive(node, 2), 20, "2 alive")  # type: ignore[misc]
        with client(first) as c:
            assert c.set("survivor", "here")
        with peer_client(first) as p:
            for version in HUGE:
                for argv in (
                    ("GC.APPLY", "k", "poison", 0, version, "evil"),
                    ("GC.APPLYDEL", "k", version, "evil"),
                ):
                    with pytest.raises(redis.ResponseError, match="ahead of this node's clock"):
                        p.execute_command(*argv)
                # A batch answers a refused record in its place; the rest are taken.
                batch = ("k", version, "evil", 0, "poison", "", "ok", 1, "n", 0, "v", "")
                refused, taken = p.execute_command("GC.APPLYBATCH", *batch)
                # (1 the first time; 0 after, as that record is held already)
                assert isinstance(refused, redis.ResponseError) and taken in (0, 1)
                assert "ahead of this node's clock" in str(refused)
                # GC.FWD answers with the client's RESP bytes: here an error reply.
                forwarded = p.execute_command("GC.FWD", 2, version, "SET", "k", "poison")
                assert forwarded.startswith(b"-ERR version") and b"ahead" in forwarded
                # A cross-region batch is answered (with the time); its record is dropped.
                p.execute_command("GC.GEO", "far", "k", version, "evil", 0, "poison", "")
            # A flush from the far future would drop every write until then (GC.FLUSH
            # takes a 64-bit signed integer: the largest, and two minutes ahead).
            ahead = ((int(time.time() * 1000) + 120_000) << 16, (1 << 63) - 1)
            for version in ahead:
                with pytest.raises(redis.ResponseError, match="ahead of this node's clock"):
                    p.execute_command("GC.FLUSH", version)
        for node in nodes:
            with client(node) as c:
                assert c.get("k") is None and c.get("survivor") == b"here"
        for node in nodes:  # every write after them works, on every node
            with client(node) as c:
                assert c.set("k", "fine") and c.get("k") == b"fine"
                assert c.execute_command("GETVER", "k") < 1 << 63
        with client(first) as c:
            assert c.info("geocache")["cluster_versions_refused"] >= 4 * len(HUGE) + 2
        assert "version refused" in first.log_text()
        # A restarted node is healthy: nothing poisoned was held anywhere to pull back.
        port = first.port
        first.stop()
        first = start_at(port, tmp_path, cluster_args("n1", f"{HOST}:{second.port}"))
        nodes[0] = first
        poll(lambda: all_alive(first, 2), 20, "n1 back")
        with client(first) as c:
            assert c.set("after", "restart") and c.get("k") == b"fine"
            assert c.execute_command("GETVER", "after") < 1 << 63
    finally:
        for node in nodes:
            node.stop()


# -- a wrong secret ---------------------------------------------------------------------


def _readyz(http_port: int) -> tuple[int, dict[str, str]]:
    """/readyz's status and body; (0, {}) while the HTTP port is not listening yet (it
    opens after the RESP port the start waits for)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{http_port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return 0, {}
        raise


def _wrong_secret_node(
    tmp_path: Path, seed: ServerProcess, *extra: str
) -> tuple[ServerProcess, int]:
    http_port = free_port()
    args = cluster_args("n2", f"{HOST}:{seed.port}", "--http-port", str(http_port), *extra)
    args[args.index(SECRET)] = "not-the-secret"
    return start_geocache(tmp_path, args), http_port


def test_a_wrong_secret_is_never_ready_says_why_and_exits(tmp_path: Path) -> None:
    seed = start_geocache(tmp_path, cluster_args("n1", None))
    bad, http_port = _wrong_secret_node(tmp_path, seed)
    try:
        poll(lambda: "cannot prove" in _readyz(http_port)[1].get("reason", ""), 15, "the reason")
        status, body = _readyz(http_port)
        assert status == 503 and body["status"] == "not ready"
        with urllib.request.urlopen(f"http://{HOST}:{http_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        failed = 'geocache_peer_handshakes_total{outcome="failed"} '
        assert float(metrics.split(failed)[1].split()[0]) >= 1
        with client(bad) as c, pytest.raises(redis.RedisError, match="joining its cluster"):
            c.set("k", "v")
        started = time.monotonic()
        assert bad.proc.wait(EXIT_DEADLINE_S) == 1
        assert time.monotonic() - started < EXIT_DEADLINE_S
        log = bad.log_text()
        assert "peer handshake failed" in log and "cannot join the cluster" in log
        poll(lambda: "peer handshake refused" in seed.log_text(), 10, "the seed's log line")
        with client(seed) as c:
            assert c.info("geocache")["cluster_peer_handshakes_refused"] >= 1
    finally:
        bad.stop()
        seed.stop()


def test_a_wrong_secret_with_allow_solo_serves_alone_and_says_so(tmp_path: Path) -> None:
    seed = start_geocache(tmp_path, cluster_args("n1", None))
    bad, http_port = _wrong_secret_node(tmp_path, seed, "--allow-solo")
    try:
        assert _readyz(http_port)[0] == 503
        poll(lambda: _readyz(http_port)[0] == 200, EXIT_DEADLINE_S, "ready alone")
        body = _readyz(http_port)[1]
        assert "serving alone" in body["warning"] and "cannot prove" in body["warning"]
        poll(lambda: "serving alone (allow_solo)" in bad.log_text(), 5, "the log line")
        with client(bad) as c:
            assert c.set("k", "alone") and c.get("k") == b"alone"
        assert bad.is_running()
    finally:
        bad.stop()
        seed.stop()


# -- clock skew -------------------------------------------------------------------------


def test_a_node_whose_clock_is_off_says_so(tmp_path: Path) -> None:
    """40 s off (over half of the 60 s bound): both nodes say so; writes still flow."""
    first = start_geocache(tmp_path, cluster_args("n1", None))
    seed = f"{HOST}:{first.port}"
    skewed = start_geocache(tmp_path, cluster_args("n2", seed, "--clock-offset-ms", "40000"))
    try:
        for node in (first, skewed):
            poll(lambda node=node: all_alive(node, 2), 20, "2 alive")  # type: ignore[misc]

        def skew_ms(node: ServerProcess) -> int:
            with client(node) as c:
                info = c.info("geocache")
            return int(info["cluster_clock_skew_ms"]) if info["cluster_clock_skewed"] else 0

        poll(lambda: skew_ms(skewed) > 39_000, 10, "n2 to see itself ahead")
        poll(lambda: skew_ms(first) < -39_000, 10, "n1 to see itself behind")
        assert "wall clock differs from its peers'" in skewed.log_text()
        with client(skewed) as c:
            assert c.set("k", "from the future")
        with client(first) as c:
            assert c.get("k") == b"from the future"  # within the bound: accepted
    finally:
        skewed.stop()
        first.stop()
