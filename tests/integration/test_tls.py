"""TLS on a node process: redis-cli --tls, redis-py and the geocache clients with client
certificates, HTTPS, every bad certificate and wrong-protocol case refused cleanly
(one log line each, no traceback, everyone else served), and SIGHUP reloading the
certificate while a connection stays open."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

import geocache
from geocache.tls import client_context
from support.cluster import poll
from support.procs import ServerProcess, free_port, require_tool, start_geocache
from support.tls import Certs, Pair, tls_args, tls_ping, wait_tls_ready, write_pair


class TlsNode:
    def __init__(self, server: ServerProcess, tls_port: int, http_port: int, certs: Certs):
        self.server, self.tls_port, self.http_port, self.certs = server, tls_port, http_port, certs

    def redis(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {
            "ssl": True,
            "ssl_ca_certs": str(self.certs.ca_file),
            "ssl_certfile": str(self.certs.client.cert),
            "ssl_keyfile": str(self.certs.client.key),
            "socket_timeout": 5,
        }
        options.update(kwargs)
        return redis.Redis(port=self.tls_port, **options)  # type: ignore[arg-type]

    def log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.server.log_text().splitlines() if re.search(pattern, line)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TlsNode]:
    tls_port, http_port = free_port(), free_port()
    args = [*tls_args(certs, tls_port), "--http-port", str(http_port)]
    with start_geocache(tmp_path_factory.mktemp("tls-node"), args) as server:
        wait_tls_ready(server, tls_port, certs.client_context())
        yield TlsNode(server, tls_port, http_port, certs)


def test_redis_cli_over_tls_with_a_client_certificate(node: TlsNode) -> None:
    cli = require_tool("redis-cli")
    certs = node.certs
    base = [cli, "-p", str(node.tls_port), "--tls", "--cacert", str(certs.ca_file)]
    base += ["--cert", str(certs.client.cert), "--key", str(certs.client.key)]
    assert (
        subprocess.run([*base, "set", "cli:k", "v1"], capture_output=True, timeout=10).stdout
        == b"OK\n"
    )
    out = subprocess.run([*base, "get", "cli:k"], capture_output=True, timeout=10).stdout
    assert out == b"v1\n"


def test_redis_py_ssl_with_client_certificate(node: TlsNode) -> None:
    with node.redis() as r:
        assert r.set("py:k", "v2")
        assert r.get("py:k") == b"v2"
        info = r.info("server")
        assert info["tcp_port"] == node.server.port  # the plaintext port is on too


def test_geocache_clients_over_tls(node: TlsNode) -> None:
    context = client_context(
        ca_file=str(node.certs.ca_file),
        cert_file=str(node.certs.client.cert),
        key_file=str(node.certs.client.key),
    )
    with geocache.Client([f"rediss://127.0.0.1:{node.tls_port}"], ssl_context=context) as c:
        c.set("gc:k", {"a": 1})
        assert c.get("gc:k") == {"a": 1}
        # The map points back at the TLS port this client came in on.
        assert c.owners("gc:k") == (f"127.0.0.1:{node.tls_port}",)

    async def run() -> object:
        a = geocache.AsyncClient([f"127.0.0.1:{node.tls_port}"], ssl_context=context)
        try:
            return await a.get("gc:k")
        finally:
            await a.close()

    assert asyncio.run(run()) == {"a": 1}


def test_geocache_status_over_tls(node: TlsNode) -> None:
    certs = node.certs
    argv = ["--port", str(node.tls_port), "--tls", "--cacert", str(certs.ca_file)]
    argv += ["--cert", str(certs.client.cert), "--key", str(certs.client.key), "--json"]
    out = subprocess.run(
        [node.server.argv[0], "-m", "geocache", "status", *argv],
        capture_output=True,
        timeout=20,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    # Read over TLS with the client certificate: the node, up, with its INFO numbers.
    (node_view,) = json.loads(out.stdout)["regions"][0]["nodes"]
    assert node_view["state"] == "up" and node_view["stale"] is False
    assert node_view["addr"] == f"127.0.0.1:{node.tls_port}"


def test_https_with_the_same_certificate(node: TlsNode) -> None:
    url = f"https://127.0.0.1:{node.http_port}/healthz"
    with urllib.request.urlopen(url, context=node.certs.client_context(), timeout=5) as reply:
        assert reply.status == 200
    # Plain HTTP to the HTTPS port: a 400 that says so, in clear.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/healthz", timeout=5)
    assert refused.value.code == 400
    assert b"HTTPS" in refused.value.read()


# -- refusals -------------------------------------------------------------------------------


def _handshake(port: int, context: ssl.SSLContext) -> BaseException | None:
    """The error of a PING over TLS, None if it was answered. Under TLS 1.3 the server
    judges the client's certificate after the client's side of the handshake is done:
    the refusal then shows on the first read (an alert, or the connection closed)."""
    try:
        reply = tls_ping(port, context)
    except (OSError, ssl.SSLError) as exc:
        return exc
    return None if reply == b"+PONG\r\n" else ConnectionError(f"no PONG: {reply!r}")


def _client_with(certs: Certs, pair: Pair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def _other_ca_pair(directory: Path, name: str, self_signed: bool) -> Pair:
    other = trustme.CA()
    if self_signed:  # a CA certificate is self-signed: present it as the client's own
        pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
        pair.cert.write_bytes(other.cert_pem.bytes())
        pair.key.write_bytes(other.private_key_pem.bytes())
        return pair
    return write_pair(other.issue_cert("client.example"), directory, name)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "peer did not return a certificate"),
        ("expired", "certificate has expired"),
        ("self-signed", "self.signed certificate"),
        ("wrong-ca", "unable to get local issuer certificate"),
    ],
)
def test_bad_client_certificates_are_refused_once_logged(
    node: TlsNode, case: str, reason: str
) -> None:
    certs = node.certs
    pair = {
        "missing": None,
        "expired": certs.issue("expired-client", "client.example", expired=True),
        "self-signed": _other_ca_pair(certs.directory, "self-signed", self_signed=True),
        "wrong-ca": _other_ca_pair(certs.directory, "wrong-ca", self_signed=False),
    }[case]
    before = len(node.log_lines(reason))
    for _ in range(5):  # five refusals, one log line (rate-limited)
        assert _handshake(node.tls_port, _client_with(certs, pair)) is not None
    poll(lambda: len(node.log_lines(reason)) > before, 5, f"a log line saying {reason!r}")
    assert len(node.log_lines(reason)) == before + 1
    _still_serving(node)


def test_a_node_certificate_for_another_name_or_expired_is_refused_by_the_client(
    tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = certs.issue("wrong-name", "other.example")
    expired = certs.issue("expired-node", "127.0.0.1", expired=True)
    for pair, why in ((wrong, "match"), (expired, "expired")):
        tls_port = free_port()
        args = [*tls_args(certs, tls_port, pair), "--tls-auth-clients", "no"]
        with start_geocache(tmp_path, args):
            error = _handshake(tls_port, certs.client_context(with_cert=False))
            assert isinstance(error, ssl.SSLCertVerificationError)
            assert why in str(error)
            with pytest.raises(geocache.CacheError):
                c = geocache.Client(
                    [f"127.0.0.1:{tls_port}"],
                    ssl_context=certs.client_context(with_cert=False),
                    timeout_s=0.5,
                )
                with c:
                    c.get("k")
            # The client says why in its log (a failed call only says "unavailable").
            assert any(
                "TLS to node failed" in r.getMessage() and why in str(r.__dict__["reason"])
                for r in caplog.records
            )


def test_plaintext_to_the_tls_port_gets_an_error_reply(node: TlsNode) -> None:
    before = len(node.log_lines("plaintext sent to a TLS port"))
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", node.tls_port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(200).startswith(b"-ERR this port speaks TLS")
    poll(
        lambda: len(node.log_lines("plaintext sent to a TLS port")) == before + 1,
        5,
        "one log line",
    )
    _still_serving(node, "tls_plaintext_refused")


def test_tls_to_the_plaintext_port_is_refused(node: TlsNode) -> None:
    before = len(node.log_lines("TLS handshake on the plaintext port"))
    for _ in range(3):
        assert _handshake(node.server.port, node.certs.client_context()) is not None
    poll(
        lambda: len(node.log_lines("TLS handshake on the plaintext port")) == before + 1,
        5,
        "one log line",
    )
    _still_serving(node, "tls_on_plaintext_port")


def _still_serving(node: TlsNode, counted: str = "tls_handshake_failures") -> None:
    """Everyone else is served, the refusal was counted, and nothing was a traceback."""
    with node.redis() as r:
        assert r.ping()
        assert r.info("stats")[counted] >= 1
    assert "Traceback" not in node.server.log_text()


# -- only TLS, and certificate rotation -------------------------------------------------------


def test_port_0_serves_tls_only_and_sighup_reloads_the_certificate(
    tmp_path: Path, certs: Certs
) -> None:
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    first = certs.issue("first", "127.0.0.1")
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    tls_port = free_port()
    args = [*tls_args(certs, tls_port, Pair(cert, key)), "--port", "0"]
    args += ["--log-level", "info"]
    server = _start_tls_only(tmp_path, args)
    try:
        wait_tls_ready(server, tls_port, certs.client_context())
        with (
            socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
            certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as kept,
        ):
            kept.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
            assert kept.recv(64) == b"+OK\r\n"
            old_serial = _serial(kept)
            second = certs.issue("second", "127.0.0.1")
            cert.write_bytes(second.cert.read_bytes())
            key.write_bytes(second.key.read_bytes())
            server.proc.send_signal(signal.SIGHUP)
            poll(lambda: "TLS certificates reloaded" in server.log_text(), 5, "the reload")
            assert _serial_of_new_connection(tls_port, certs) != old_serial
            # The connection opened before the reload goes on.
            kept.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            assert kept.recv(64) == b"$1\r\nv\r\n"
        # A broken pair on SIGHUP changes nothing: the node keeps the last good one.
        key.write_bytes(first.key.read_bytes())
        server.proc.send_signal(signal.SIGHUP)
        poll(lambda: "TLS reload failed" in server.log_text(), 5, "the failed reload")
        assert tls_ping(tls_port, certs.client_context()) == b"+PONG\r\n"
        # Nothing listens in plaintext.
        assert server.log_text().count("resp=off") == 1
    finally:
        server.stop()


def _start_tls_only(tmp: Path, args: list[str]) -> ServerProcess:
    from support.procs import REPO_ROOT, _spawn, geocache_argv

    argv = geocache_argv(0, args)
    return _spawn("geocache", argv, 0, tmp / "tls-only.log", cwd=REPO_ROOT, env=_env())


def _serial(sock: ssl.SSLSocket) -> int:
    from cryptography import x509

    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial_of_new_connection(port: int, certs: Certs) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        return _serial(sock)


def _env() -> dict[str, str]:
    from support.procs import geocache_env

    return geocache_env()


def test_tls_files_that_do_not_load_stop_serve_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    argv = ["--tls-port", str(free_port()), "--tls-auth-clients", "no", "--http-port", "0"]
    for cert in ("/nonexistent.crt", str(tmp_path / "bad.crt")):
        files = ["--tls-cert-file", cert, "--tls-key-file", cert, "--port", str(free_port())]
        done = subprocess.run(
            [sys.executable, "-m", "geocache", "serve", *argv, *files],
            capture_output=True,
            text=True,
            timeout=20,
            env=_env(),
        )
        assert done.returncode == 2
        assert "TLS files" in done.stderr and "Traceback" not in done.stderr
