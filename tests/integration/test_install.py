"""Installing geocache as a user would, into fresh virtual environments.

The sdist is built from this checkout, and pip builds the wheel from it (so the sdist
builds a working wheel): `pip install geocache` gives LocalCache and the clients without
aiohttp, and `geocache serve` says to install the server extra; with
`geocache[server]` the node's command runs. pip here is this environment's own, pointed
at each new interpreter (`pip --python`), and its index and cache are the machine's:
no pip is installed into the new environments, and wheels already seen are reused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# A cold pip cache downloads hiredis, xxhash and aiohttp's tree: minutes, not seconds.
INSTALL_TIMEOUT_S = 480

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def clean_env() -> dict[str, str]:
    """This environment without what would make a new interpreter see the checkout."""
    skipped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {
        k: v for k, v in os.environ.items() if k not in skipped and not k.startswith("GEOCACHE_")
    }


def run(
    argv: list[str | Path], timeout_s: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**clean_env(), **(env or {})},
        cwd="/",
    )


def pip_install(python: Path, *what: str | Path, env: dict[str, str] | None = None) -> None:
    done = run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", *what],
        timeout_s=INSTALL_TIMEOUT_S,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def new_venv(path: Path) -> Path:
    venv.create(path, with_pip=False)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", out, REPO_ROOT], timeout_s=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (found,) = out.glob("geocache-*.tar.gz")
    return found


def test_the_sdist_carries_the_tests_the_changelog_and_the_license(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"CHANGELOG.md", "LICENSE", "README.md", "tests/conftest.py"} <= names
    assert "tests/support/procs.py" in names
    assert not any("__pycache__" in name for name in names)


def test_the_base_install_serves_the_library_but_not_the_node(sdist: Path, tmp_path: Path) -> None:
    python = new_venv(tmp_path / "base")
    pip_install(python, sdist)
    library = (
        "from geocache import AsyncClient, Client, LocalCache, __version__\n"
        "from importlib.metadata import version\n"
        "assert version('geocache') == __version__\n"
        "cache = LocalCache(max_bytes=1 << 20)\n"
        "cache.set('k', {'a': 1})\n"
        "assert cache.get('k') == {'a': 1}\n"
        # Built from the sdist where a C compiler is (CI has one): the hot path compiled.
        "import geocache.compiled\n"
        "assert geocache.compiled.compiled()\n"
    )
    done = run([python, "-c", library])
    assert done.returncode == 0, done.stderr
    for module in ("aiohttp", "prometheus_client", "rich"):
        done = run([python, "-c", f"import {module}"])
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, module
    done = run([tmp_path / "base" / "bin" / "geocache", "serve"])
    assert done.returncode == 2
    assert "pip install 'geocache[server]'" in done.stderr


def test_the_server_extra_runs_the_node_command(tmp_path: Path) -> None:
    python = new_venv(tmp_path / "server")
    # Built pure (GEOCACHE_PURE=1 at build time): no .so is made, and CI pays for one
    # compile here, the sdist's, not two.
    pip_install(python, f"{REPO_ROOT}[server]", env={"GEOCACHE_PURE": "1"})
    done = run([python, "-c", "import geocache.store.keyspace as k; print(k.__file__)"])
    assert done.returncode == 0 and done.stdout.strip().endswith(".py"), done.stderr
    done = run([tmp_path / "server" / "bin" / "geocache", "serve", "--help"])
    assert done.returncode == 0, done.stderr
    assert "--max-bytes" in done.stdout
    # The node's modules import: its HTTP API (aiohttp), metrics (prometheus_client) and
    # peer discovery (dnspython, zeroconf).
    imports = "import geocache.server.node, geocache.cli.status, dns.asyncresolver, zeroconf"
    done = run([python, "-c", imports])
    assert done.returncode == 0, done.stderr
