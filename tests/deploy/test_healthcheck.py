"""deploy/healthcheck.py, the image's health check and the Kubernetes probes, against a
real node whose HTTP port is HTTPS with client certificates required: it passes with
the node's own certificate and fails, with one line, on what a probe must catch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from geocache.ports import free_port
from support.procs import REPO_ROOT, ServerProcess, start_geocache
from support.tls import Certs, tls_args

SCRIPT = REPO_ROOT / "deploy" / "healthcheck.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("healthcheck-certs"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[tuple[int, int]]:
    tls_port, http_port = free_port(), free_port()
    args = [*tls_args(certs, tls_port), "--http-port", str(http_port)]
    server: ServerProcess = start_geocache(tmp_path_factory.mktemp("healthcheck"), args)
    try:
        yield tls_port, http_port
    finally:
        server.stop()


def probe(path: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), path],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def node_env(certs: Certs, node: tuple[int, int]) -> dict[str, str]:
    """What the node's container holds: the settings it was started with."""
    return {
        "GEOCACHE_BIND": "0.0.0.0",
        "GEOCACHE_TLS_PORT": str(node[0]),
        "GEOCACHE_HTTP_PORT": str(node[1]),
        "GEOCACHE_TLS_CERT_FILE": str(certs.node.cert),
        "GEOCACHE_TLS_KEY_FILE": str(certs.node.key),
        "GEOCACHE_TLS_CA_CERT_FILE": str(certs.ca_file),
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probe_passes_over_https_with_the_nodes_certificate(
    certs: Certs, node: tuple[int, int], path: str
) -> None:
    done = probe(path, node_env(certs, node))
    assert done.returncode == 0, done.stderr


def test_the_probe_fails_on_a_certificate_from_another_ca(
    certs: Certs, node: tuple[int, int], tmp_path: Path
) -> None:
    stranger = Certs.make(tmp_path)
    env = node_env(certs, node)
    env["GEOCACHE_TLS_CERT_FILE"] = str(stranger.node.cert)
    env["GEOCACHE_TLS_KEY_FILE"] = str(stranger.node.key)
    done = probe("/healthz", env)
    assert done.returncode == 1 and done.stderr.startswith("/healthz: "), done.stderr


def test_the_probe_fails_in_plain_http_to_https_and_on_a_closed_port(
    certs: Certs, node: tuple[int, int]
) -> None:
    plain = {**node_env(certs, node), "GEOCACHE_TLS_HTTP": "no"}
    assert probe("/healthz", plain).returncode == 1  # the node answers HTTP 400
    closed = {**node_env(certs, node), "GEOCACHE_HTTP_PORT": str(free_port())}
    done = probe("/healthz", closed)
    assert done.returncode == 1 and "refused" in done.stderr.lower(), done.stderr
