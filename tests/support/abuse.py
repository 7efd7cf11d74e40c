"""Abusive clients and the watchers that judge a node under them (tests and bench/abuse.py).

Each scenario is one function that does what a hostile or careless client would, bounded
by a count and a deadline, against any RESP server (geocache or redis-server) on
127.0.0.1, and returns what the abuser got, in words. While it runs, a `Bystander`
PINGs on its own connection every few milliseconds and keeps the worst round trip, and
an `RssPeak` samples the server's resident memory from /proc.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .resp import encode_command

MB = 1 << 20
HOST = "127.0.0.1"


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (bytes), from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class RssPeak:
    """Samples a process's RSS every `every_s` in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int, every_s: float = 0.01) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.peak = max(self.peak, rss_bytes(self.pid))


# The bystander runs in a process of its own: in the abuser's process it would wait for
# the GIL whenever the abuser builds its payload, and measure that instead of the node.
_BYSTANDER = r"""
import json, socket, sys, threading, time
port, every_s, password = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if password:
    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
    sock.recv(64)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
worst, pings, failures = 0.0, 0, []
print("ready", flush=True)
while not stop.wait(every_s):
    started = time.perf_counter()
    try:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                raise ConnectionError("closed")
            got += chunk
    except OSError as exc:
        failures.append(repr(exc))
        break
    worst = max(worst, time.perf_counter() - started)
    pings += 1
    if got != b"+PONG\r\n":
        failures.append(repr(got))
print(json.dumps({"worst_s": worst, "pings": pings, "failures": failures}), flush=True)
"""


class Bystander:
    """Another client, in its own process: PINGs every `every_s` on its own connection,
    timing each answer; the figures are read when it stops."""

    def __init__(self, port: int, every_s: float = 0.01, password: str | None = None) -> None:
        self.worst_s = 0.0
        self.pings = 0
        self.failures: list[str] = []
        self._argv = [sys.executable, "-c", _BYSTANDER, str(port), str(every_s), password or ""]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Bystander:
        self._proc = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        assert proc is not None
        try:
            out, _ = proc.communicate("", timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            out, _ = proc.communicate()
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        self.worst_s = result.get("worst_s", 0.0)
        self.pings = result.get("pings", 0)
        self.failures = result.get("failures", ["no report"])

    @property
    def worst_ms(self) -> float:
        return self.worst_s * 1000


def _connect(port: int, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((HOST, port))
    return sock


def _call(sock: socket.socket, *argv: str | bytes) -> bytes:
    sock.sendall(encode_command(list(argv)))
    return sock.recv(65536)


def _send_until_cut(sock: socket.socket, data: bytes, deadline: float) -> int:
    """Send `data`; stop when the server closes (or the deadline). Bytes sent."""
    view = memoryview(data)
    sent = 0
    sock.settimeout(1.0)
    try:
        while sent < len(view) and time.monotonic() < deadline:
            sent += sock.send(view[sent : sent + 4 * MB])
    except OSError:
        pass
    return sent


def _drain(
    sock: socket.socket, limit_bytes: int, deadline: float, wait_s: float = 1.0
) -> tuple[bytes, int, bool]:
    """Read until closed, `limit_bytes`, the deadline, or `wait_s` of silence: the
    first 64 KiB read, the bytes read, and whether the server closed."""
    head = b""
    got = 0
    sock.settimeout(wait_s)
    try:
        while got < limit_bytes and time.monotonic() < deadline:
            chunk = sock.recv(4 * MB)
            if not chunk:
                return head, got, True
            if len(head) < 65536:
                head += chunk[: 65536 - len(head)]
            got += len(chunk)
    except TimeoutError:
        return head, got, False
    except OSError:
        return head, got, True
    return head, got, False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the abuser got, in words, and whether the server cut it off."""

    text: str
    cut_off: bool


def pipelined_big_gets(
    port: int, value_bytes: int = MB, count: int = 1024, hold_s: float = 1.0
) -> Outcome:
    """`count` pipelined GETs of one big value (a small request asking for a lot), not
    read for `hold_s`, then read as fast as possible."""
    with _connect(port, rcvbuf=64 * 1024) as sock:
        assert _call(sock, "SET", "abuse:big", b"v" * value_bytes).startswith(b"+OK")
        sock.sendall(encode_command(["GET", "abuse:big"]) * count)
        time.sleep(hold_s)
        want = count * (value_bytes + 16)
        _head, got, closed = _drain(sock, want, time.monotonic() + 30)
    whole = got >= count * value_bytes
    text = f"read {got / MB:.0f} MB of {count * value_bytes / MB:.0f} MB"
    return Outcome(text + (", then closed" if closed and not whole else ""), not whole)


def unfinished_commands(port: int, rounds: int = 12, size_bytes: int = 100 * MB) -> Outcome:
    """Connect, send `size_bytes` of an MSET that never ends, close; `rounds` times."""
    pairs = size_bytes // MB
    value = b"$%d\r\n%s\r\n" % (MB, b"x" * MB)
    data = b"*%d\r\n$4\r\nMSET\r\n" % (2 * pairs + 2)
    data += b"".join(b"$6\r\nk%05d\r\n" % i + value for i in range(pairs))
    cut = 0
    sent_total = 0
    for _ in range(rounds):
        with _connect(port) as sock:
            sent = _send_until_cut(sock, data, time.monotonic() + 10)
            sent_total += sent
            cut += sent < len(data)
    return Outcome(
        f"{cut} of {rounds} cut off; {sent_total / rounds / MB:.0f} MB sent a round", cut > 0
    )


def big_multi(port: int, count: int = 500, value_bytes: int = MB) -> Outcome:
    """MULTI, then `count` SETs of big values queued, never EXEC."""
    with _connect(port) as sock:
        assert _call(sock, "MULTI").startswith(b"+OK")
        one = encode_command(["SET", "abuse:multi", b"m" * value_bytes])
        deadline = time.monotonic() + 20
        sent = _send_until_cut(sock, one * count, deadline)
        head, _got, closed = _drain(sock, count * 200, deadline)
    queued = head.count(b"+QUEUED\r\n")
    errors = [line for line in head.split(b"\r\n") if line.startswith(b"-")]
    text = f"{queued} of {count} queued, {sent / MB:.0f} MB sent"
    if errors:
        text += f", {len(errors)} errors ({errors[0][:40].decode(errors='replace')})"
    if closed:
        text += ", closed"
    return Outcome(text, sent < len(one) * count or closed)


def slow_reader(port: int, watch_s: float = 6.0, value_bytes: int = 100 * 1024) -> Outcome:
    """Ask for 20 MB of replies, then read one byte a second."""
    count = 20 * MB // value_bytes
    with _connect(port, rcvbuf=4096) as sock:
        assert _call(sock, "SET", "abuse:slow", b"s" * value_bytes).startswith(b"+OK")
        sock.sendall(encode_command(["GET", "abuse:slow"]) * count)
        started = time.monotonic()
        sock.settimeout(1.5)
        while time.monotonic() - started < watch_s:
            try:
                # A reset leaves what was received readable: ask the socket for it too.
                if not sock.recv(1) or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return Outcome(f"closed after {time.monotonic() - started:.1f} s", True)
            except TimeoutError:
                pass
            except OSError:
                return Outcome(f"reset after {time.monotonic() - started:.1f} s", True)
            time.sleep(1.0)
    return Outcome(f"still open after {watch_s:.0f} s", False)


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` TCP connections that send nothing (the caller closes them)."""
    return [_connect(port) for _ in range(count)]


def half_sent_http(port: int, count: int) -> list[socket.socket]:
    """`count` HTTP connections, each with a request whose headers never end."""
    socks = []
    for _ in range(count):
        sock = _connect(port)
        sock.sendall(b"GET /v1/keys/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(sock)
    return socks


def closed_count(socks: list[socket.socket], timeout_s: float = 0.05) -> int:
    """How many of `socks` the server has closed (reads what is there)."""
    closed = 0
    for sock in socks:
        sock.settimeout(timeout_s)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed += 1
                    break
        except TimeoutError:
            pass
        except OSError:
            closed += 1
    return closed


def wait_for(check: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()
