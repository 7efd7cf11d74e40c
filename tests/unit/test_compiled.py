"""The hot path runs compiled where the build compiled it, and pure with GEOCACHE_PURE=1.

A compiled build (mypyc, setup.py) leaves a `.so` beside each module of
`geocache.compiled.MODULES`; those must be what this process runs, all of them (a
partial build would mix the modes), and INFO server and /v1/stats must say so. With
GEOCACHE_PURE=1 set, the same install imports the `.py` sources: checked in a new
interpreter and in a `geocache serve` process, whichever mode this run is in.

scripts/test.sh sets GEOCACHE_EXPECT_COMPILED=1 for its compiled run, so a build that
fell back to pure Python without a word fails here instead of passing slowly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import geocache
from geocache.clock import ManualClock
from geocache.compiled import PURE_ENV, compiled, is_extension, module_names, pure_requested
from geocache.config import NodeConfig
from geocache.server.info import info_sections
from geocache.server.node import Node
from support.procs import geocache_env, start_geocache

PACKAGE_DIR = Path(geocache.__file__).parent
NAMES = module_names(str(PACKAGE_DIR))


def built_compiled() -> bool:
    """Whether the build left compiled modules beside the sources (or was told it must)."""
    if os.environ.get("GEOCACHE_EXPECT_COMPILED") == "1":
        return True
    return any(
        (PACKAGE_DIR.parent / (name.replace(".", "/") + suffix)).exists()
        for name in NAMES
        for suffix in EXTENSION_SUFFIXES
    )


def expect_compiled() -> bool:
    return built_compiled() and not pure_requested()


def test_the_list_names_the_hot_path() -> None:
    for name in (
        "geocache.protocol.reader",
        "geocache.protocol.writer",
        "geocache.store.keyspace",
        "geocache.commands.strings",
        "geocache.server.resp",
        "geocache.slots",
        "geocache.cluster.placement",
        "geocache.cluster.records",
        "geocache.cluster.swim_messages",
    ):
        assert name in NAMES
    # Package __init__ modules stay Python: the pure-mode hook finds modules by file.
    assert not any(name.endswith("__init__") for name in NAMES)
    assert "geocache.protocol.types" not in NAMES
    assert "geocache.store.local" not in NAMES


def test_every_listed_module_runs_in_the_mode_the_build_and_environment_ask() -> None:
    modes = {name: is_extension(name) for name in NAMES}
    want = expect_compiled()
    assert [name for name, ext in modes.items() if ext != want] == []
    assert compiled() is want


def test_info_server_says_whether_the_hot_path_is_compiled() -> None:
    node = Node(NodeConfig(port=0, http_port=0), clock=ManualClock())
    assert info_sections(node)["server"]["compiled"] == ("yes" if expect_compiled() else "no")


def test_pure_env_imports_the_sources_beside_the_compiled_modules() -> None:
    script = (
        "import importlib, json, sys, geocache.compiled as c\n"
        "names = c.module_names(sys.argv[1])\n"
        "files = [importlib.import_module(n).__file__ for n in names]\n"
        "print(json.dumps({'files': files,"
        " 'compiled': c.compiled(), 'native': [m for m in sys.modules if 'mypyc' in m]}))\n"
    )
    env = {**geocache_env(), PURE_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen["files"]) == len(NAMES)
    assert all(file.endswith(".py") for file in seen["files"])
    assert seen["compiled"] is False
    assert seen["native"] == []  # the shared library of the compiled modules is not loaded


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "as-built"])
def test_a_serve_process_reports_its_mode(
    pure: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pure:
        monkeypatch.setenv(PURE_ENV, "1")
    else:
        monkeypatch.delenv(PURE_ENV, raising=False)
    want = "yes" if built_compiled() and not pure else "no"
    with start_geocache(tmp_path) as server, server.raw() as client:
        client.send("INFO", "server")
        text = client.read_reply().decode()
        assert f"compiled:{want}\r\n" in text
        if want == "no" and not pure:
            assert "hot path is not compiled" in server.log_text()
