"""Certificates for TLS tests, made with trustme, and nodes started with them.

`Certs.make(dir)` writes a CA, a node certificate for 127.0.0.1 and localhost (trustme
gives it both serverAuth and clientAuth, so nodes present it to their peers too) and a
client certificate, as PEM files. `tls_args` is the node flags that use them;
`wait_tls_ready` polls PING over TLS, for a node without a plaintext port.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import trustme

from .procs import READY_TIMEOUT_S, ServerProcess, ServerStartError

NODE_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class Pair:
    """A certificate (chain) and its key, as files."""

    cert: Path
    key: Path


def write_pair(leaf: trustme.LeafCert, directory: Path, name: str) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    pair.key.write_bytes(leaf.private_key_pem.bytes())
    return pair


@dataclass(frozen=True, slots=True)
class Certs:
    ca: trustme.CA
    ca_file: Path
    node: Pair
    client: Pair
    directory: Path

    @classmethod
    def make(cls, directory: Path) -> Certs:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        node = write_pair(ca.issue_cert(*NODE_NAMES), directory, "node")
        client = write_pair(ca.issue_cert("client.example"), directory, "client")
        return cls(ca, ca_file, node, client, directory)

    def issue(self, name: str, *identities: str, expired: bool = False) -> Pair:
        """Another certificate from this CA (`expired`: valid only in the past)."""
        not_before = not_after = None
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            not_before, not_after = (
                now - datetime.timedelta(days=10),
                now - datetime.timedelta(days=1),
            )
        leaf = self.ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
        return write_pair(leaf, self.directory, name)

    def client_context(self, with_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if with_cert:
            context.load_cert_chain(str(self.client.cert), str(self.client.key))
        return context


def tls_args(certs: Certs, tls_port: int, node: Pair | None = None) -> list[str]:
    pair = node or certs.node
    return [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(pair.cert),
        "--tls-key-file",
        str(pair.key),
        "--tls-ca-cert-file",
        str(certs.ca_file),
    ]


def tls_ping(
    port: int, context: ssl.SSLContext, timeout_s: float = 2.0, host: str = "127.0.0.1"
) -> bytes:
    """PING over TLS: the reply's bytes (raises OSError, ssl.SSLError on failure)."""
    with (
        socket.create_connection((host, port), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=host) as sock,
    ):
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64)


def wait_tls_ready(
    server: ServerProcess, port: int, context: ssl.SSLContext, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.is_running():
            raise ServerStartError(f"node exited:\n{server.log_text()[-4000:]}")
        try:
            if tls_ping(port, context, 1.0, server.host) == b"+PONG\r\n":
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServerStartError(f"no TLS PONG on {port}:\n{server.log_text()[-4000:]}")
