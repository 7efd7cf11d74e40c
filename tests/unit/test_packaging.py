"""What `pip install geocache` brings: the library without the node's dependencies.

`import geocache` (LocalCache, Client, AsyncClient) must not import the `server`
extra's modules, and the commands that need them say how to install them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import geocache
from geocache.cli import main as cli

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_EXTRA = ("aiohttp", "prometheus_client", "uvloop", "rich")


def test_importing_the_library_leaves_the_server_extra_alone() -> None:
    # A fresh interpreter: this one has imported the node already (other tests).
    code = (
        "import json, sys\n"
        "import geocache\n"
        "from geocache import AsyncClient, Client, LocalCache\n"
        "cache = LocalCache(max_bytes=1 << 20)\n"
        "cache.set('k', 'v')\n"
        "assert cache.get('k') == 'v'\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    imported = set(json.loads(done.stdout))
    assert "geocache" in imported
    assert imported.isdisjoint(SERVER_EXTRA), imported & set(SERVER_EXTRA)


@pytest.mark.parametrize("command", ["serve", "demo", "status"])
def test_a_command_without_the_server_extra_names_the_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "find_spec", lambda name: None)
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert "pip install 'geocache[server]'" in err
    assert f"geocache {command} needs " in err


def test_the_relay_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "find_spec", lambda name: None)
    assert cli.missing_modules("relay") == []


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "geocache._version.__version__"
    from geocache._version import __version__

    assert geocache.__version__ == __version__


def test_the_base_install_needs_only_the_clients_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    base = {req.split(">")[0].split(";")[0].strip() for req in project["dependencies"]}
    assert base == {"hiredis", "xxhash"}
    server = {r.split(">")[0].strip() for r in project["optional-dependencies"]["server"]}
    assert server == {
        "aiohttp",
        "prometheus-client",
        "uvloop",
        "rich",
        "dnspython",
        "zeroconf",
        "cryptography",
    }
