"""The container image: the Dockerfile passes hadolint; the image builds without a
network and two containers of it form a cluster with TLS on every link, from
certificates that deploy/compose.yaml's one-shot `certs` service makes (slow: see
image.py for the cache)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from geocache.ports import free_port
from geocache.tls import client_context
from support.cluster import SECRET, poll
from support.procs import REPO_ROOT

from .image import (
    base_image,
    build_context,
    build_image,
    podman,
    podman_argv,
    ulimit_args,
    wheelhouse,
)

# A node in a container answers /readyz within seconds; 60 s covers a cold, shared CI box.
READY_TIMEOUT_S = 60.0


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert os.geteuid() == 0, "the container test runs podman as root (CI does)"
    for tool in ("podman", "debootstrap"):
        assert shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists(), (
            f"{tool} is missing: scripts/setup.sh installs it"
        )
    started = time.monotonic()
    base = base_image()
    wheels = wheelhouse(base)
    tag = f"localhost/geocache-test:{os.getpid()}"
    context = build_context(tmp_path_factory.mktemp("image"), wheels)
    build_s = build_image(context, base, tag)
    print(
        f"image: base and wheels {time.monotonic() - started - build_s:.0f}s, build {build_s:.0f}s"
    )
    try:
        yield tag
    finally:
        subprocess.run(podman_argv("rmi", "--force", tag), capture_output=True, check=False)


def make_certs(image: str, directory: Path) -> Path:
    """Run compose.yaml's `certs` service (as compose would: its user, entrypoint and
    command, `./tls` mounted at /tls) into `directory`."""
    service = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())["services"]
    certs = service["certs"]
    (mount,) = certs["volumes"]
    target = mount.split(":")[1]
    entrypoint, *args = certs["entrypoint"]
    directory.mkdir()  # compose makes a missing bind-mount source; podman run does not
    podman(
        "run",
        "--rm",
        "--user",
        certs["user"],
        "--volume",
        f"{directory}:{target}",
        "--entrypoint",
        entrypoint,
        *ulimit_args(),
        image,
        *args,
        *certs["command"],
    )
    return directory


def run_node(image: str, name: str, tls: Path, ports: tuple[int, int], *env: str) -> str:
    """A node in a container on the host's network (traffic stays on 127.0.0.1), TLS only
    (RESP and peers on ports[0], HTTPS on ports[1]), with the certificates in `tls`."""
    settings = {
        "GEOCACHE_BIND": "127.0.0.1",
        "GEOCACHE_PORT": "0",
        "GEOCACHE_TLS_PORT": str(ports[0]),
        "GEOCACHE_HTTP_PORT": str(ports[1]),
        "GEOCACHE_TLS_CERT_FILE": "/tls/node.crt",
        "GEOCACHE_TLS_KEY_FILE": "/tls/node.key",
        "GEOCACHE_TLS_CA_CERT_FILE": "/tls/ca.crt",
        "GEOCACHE_TLS_CLUSTER": "yes",
        "GEOCACHE_NODE_ID": name,
        "GEOCACHE_CLUSTER_SECRET": SECRET,
        "GEOCACHE_MAX_BYTES": "64mb",
    }
    settings.update(dict(item.split("=", 1) for item in env))
    env_args = [arg for k, v in settings.items() for arg in ("--env", f"{k}={v}")]
    volume = ["--volume", f"{tls}:/tls:ro"]
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        *volume,
        *ulimit_args(),
        *env_args,
        image,
    )
    return name


def ready(http_port: int, tls: ssl.SSLContext) -> bool:
    import urllib.request

    try:
        url = f"https://127.0.0.1:{http_port}/readyz"
        with urllib.request.urlopen(url, timeout=1, context=tls) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def tls_redis(port: int, tls: Path) -> redis.Redis:
    return redis.Redis(
        port=port,
        ssl=True,
        ssl_ca_certs=str(tls / "ca.crt"),
        ssl_certfile=str(tls / "client.crt"),
        ssl_keyfile=str(tls / "client.key"),
        socket_timeout=5,
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_containers_form_a_cluster_with_tls(image: str, tmp_path: Path) -> None:
    tag = f"gc{os.getpid()}"
    tls = make_certs(image, tmp_path / "tls")
    # The nodes' user reads the keys; the CA's key stays out of its reach.
    assert (tls / "node.key").stat().st_mode & 0o777 == 0o644
    assert (tls / "ca.key").stat().st_mode & 0o777 == 0o600
    context = client_context(
        ca_file=str(tls / "ca.crt"),
        cert_file=str(tls / "client.crt"),
        key_file=str(tls / "client.key"),
    )
    one, two = (free_port(), free_port()), (free_port(), free_port())
    names: list[str] = []
    try:
        names.append(run_node(image, f"{tag}-1", tls, one))
        seed = f"GEOCACHE_SEEDS=127.0.0.1:{one[0]}"
        names.append(run_node(image, f"{tag}-2", tls, two, seed))
        for http_port in (one[1], two[1]):
            poll(lambda p=http_port: ready(p, context), READY_TIMEOUT_S, f"/readyz on {http_port}")
        first, second = tls_redis(one[0], tls), tls_redis(two[0], tls)
        poll(lambda: _members(second) == 2, 20, "two members")
        assert first.set("in-a-container", "yes")
        assert second.get("in-a-container") == b"yes"
        # The peers reach each other at their TLS ports: no plaintext port is open.
        assert {line.split()[1].split("@")[0] for line in _lines(first)} == {
            f"127.0.0.1:{one[0]}",
            f"127.0.0.1:{two[0]}",
        }
        # Not root inside; the image's health check asks /healthz over HTTPS.
        assert podman("exec", names[0], "id", "-u").strip() == "10001"
        assert (
            subprocess.run(podman_argv("healthcheck", "run", names[0]), check=False).returncode == 0
        )
        # What the Kubernetes readiness probe runs in the container.
        podman("exec", names[0], "python3", "/opt/geocache/healthcheck.py", "/readyz")
        inspect = json.loads(podman("image", "inspect", image))[0]
        exposed = inspect["Config"]["ExposedPorts"]
        assert {"7379/tcp", "7380/tcp", "7381/tcp"} <= set(exposed)
        # SIGTERM (podman stop) is a graceful leave: the node exits 0 within the grace.
        started = time.monotonic()
        podman("stop", "--time", "20", names[1], timeout_s=60)
        assert time.monotonic() - started < 20
        state = json.loads(podman("inspect", names[1]))[0]["State"]
        assert state["ExitCode"] == 0, podman("logs", names[1])
    finally:
        for name in names:
            subprocess.run(
                podman_argv("rm", "--force", "--time", "0", name), capture_output=True, check=False
            )


def _lines(client: redis.Redis) -> list[str]:
    nodes = client.execute_command("CLUSTER", "NODES")
    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    return [line for line in text.splitlines() if line.strip()]


def _members(client: redis.Redis) -> int:
    return len(_lines(client))
