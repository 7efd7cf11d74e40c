"""The Django cache backend: Django's own cache tests against a real node process, and
what the backend adds (LOCATION, OPTIONS, shared clients, clear under KEY_PREFIX).

Django's tests ship in its sdist, not its wheel: the first run downloads the sdist of
the installed (pinned) version with pip and keeps its `tests/cache` beside the venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.regions import addr
from geocache import Client, Unavailable
from support.procs import ServerProcess, start_geocache

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_geocache(tmp_path_factory.mktemp("django"), ["--log-level", "warning"])
    yield server
    server.stop()


def django_tests_dir() -> Path:
    """Django's test apps (only `cache`), from the installed version's sdist."""
    import django

    version = django.__version__
    root = Path(sys.prefix) / "geocache-test-data" / f"django-{version}-tests"
    if (root / "cache" / "tests.py").exists():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--no-binary", ":all:", "--dest", tmp, f"django=={version}"],
            check=True,
            timeout=240,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        inside = f"{sdist.name.removesuffix('.tar.gz')}/tests/cache/"
        staging = Path(tmp) / "out"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(inside)]
            tar.extractall(staging, members=members, filter="data")
        root.mkdir(parents=True, exist_ok=True)
        os.replace(staging / inside, root / "cache")
    return root


def test_django_cache_suite_passes_against_a_node(node: ServerProcess) -> None:
    tests_dir = django_tests_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(HERE / "django_suite.py"), str(tests_dir), addr(node)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20_000:]
    last = done.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(", ")[:2])
    # Django 5.2.19: 54 cases; the 3 skipped are culling (test_cull, test_zero_cull,
    # test_cull_delete_when_store_empty), skipped by Django for a backend without it.
    assert failed == 0 and passed >= 50, last


def test_location_options_and_a_shared_client(node: ServerProcess) -> None:
    from geocache.contrib.django import GeocacheCache

    one = GeocacheCache(f" {addr(node)} ;", {"OPTIONS": {"timeout_s": 2.0}})
    two = GeocacheCache([addr(node)], {"OPTIONS": {"timeout_s": 2.0}})
    assert one.client is two.client  # one socket pool per process, not per thread
    other = GeocacheCache(addr(node), {"OPTIONS": {"serializer": "json"}})
    assert other.client is not one.client
    other.set("dj:json", {"a": [1]})
    assert other.get("dj:json") == {"a": [1]}
    with Client([addr(node)]) as plain:
        assert plain.get(":1:dj:json") == {"a": [1]}  # marked JSON: any client reads it
    # OPTIONS reach the client: TLS to a plaintext node fails, as the client would...
    tls = GeocacheCache(addr(node), {"OPTIONS": {"ssl": True}})
    with pytest.raises(Unavailable):
        tls.get("k")
    # ...and an option the client does not have is an error, not ignored.
    bad = GeocacheCache(addr(node), {"OPTIONS": {"sssl": True}})
    with pytest.raises(TypeError):
        bad.get("k")


def test_clear_keeps_other_prefixes(node: ServerProcess) -> None:
    from geocache.contrib.django import GeocacheCache

    mine = GeocacheCache(addr(node), {"KEY_PREFIX": "app1"})
    theirs = GeocacheCache(addr(node), {"KEY_PREFIX": "app2"})
    mine.set_many({"a": 1, "b": "two"})
    theirs.set("a", b"three")
    mine.clear()
    assert mine.get_many(["a", "b"]) == {}
    assert theirs.get("a") == b"three"
