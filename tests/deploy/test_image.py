"""The container image: the Dockerfile passes hadolint; the image builds without a
network and two containers of it form a cluster (slow: see image.py for the cache)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geocache.ports import free_port
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


def run_node(image: str, name: str, port: int, http_port: int, *env: str) -> str:
    """A node in a container on the host's network (traffic stays on 127.0.0.1)."""
    settings = {
        "GEOCACHE_BIND": "127.0.0.1",
        "GEOCACHE_PORT": str(port),
        "GEOCACHE_HTTP_PORT": str(http_port),
        "GEOCACHE_NODE_ID": name,
        "GEOCACHE_CLUSTER_SECRET": SECRET,
        "GEOCACHE_MAX_BYTES": "64mb",
    }
    settings.update(dict(item.split("=", 1) for item in env))
    env_args = [arg for k, v in settings.items() for arg in ("--env", f"{k}={v}")]
    podman("run", "--detach", "--name", name, "--network", "host", *ulimit_args(), *env_args, image)
    return name


def ready(http_port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_containers_form_a_cluster(image: str) -> None:
    tag = f"gc{os.getpid()}"
    ports = [free_port() for _ in range(4)]
    names: list[str] = []
    try:
        names.append(run_node(image, f"{tag}-1", ports[0], ports[1]))
        seed = f"GEOCACHE_SEEDS=127.0.0.1:{ports[0]}"
        names.append(run_node(image, f"{tag}-2", ports[2], ports[3], seed))
        for http_port in (ports[1], ports[3]):
            poll(lambda p=http_port: ready(p), READY_TIMEOUT_S, f"/readyz on {http_port}")
        one = redis.Redis(port=ports[0], socket_timeout=5)
        two = redis.Redis(port=ports[2], socket_timeout=5)
        poll(lambda: _members(two) == 2, 20, "two members")
        assert one.set("in-a-container", "yes")
        assert two.get("in-a-container") == b"yes"
        # Not root inside; the image's health check runs /healthz.
        assert podman("exec", names[0], "id", "-u").strip() == "10001"
        assert (
            subprocess.run(podman_argv("healthcheck", "run", names[0]), check=False).returncode == 0
        )
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


def _members(client: redis.Redis) -> int:
    nodes = client.execute_command("CLUSTER", "NODES")
    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    return len([line for line in text.splitlines() if line.strip()])
