"""Fixtures of the fault tests, and the table they print at the end of the session.

The fault tests need root (network namespaces, iptables) and the `ip` and `iptables`
tools, which scripts/setup.sh installs; CI runs as root. Nothing is skipped: a machine
that lacks them fails `fault_host` with what is missing.

Each schedule's result is kept for the session; at its end the table (schedules,
operations, faults by kind, violations) is printed and written as JSON to
build/faults/ci.json.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from support.procs import REPO_ROOT

from .links import iptables_works
from .netns import Network
from .report import table, write_json
from .runner import RunResult

REPORT_PATH = REPO_ROOT / "build" / "faults" / "ci.json"
RESULTS = pytest.StashKey[list[RunResult]]()


@pytest.fixture(scope="session")
def fault_host() -> None:
    """This machine can run the fault tests: root, ip, iptables in a namespace."""
    assert os.geteuid() == 0, "the fault tests need root (network namespaces, iptables)"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    assert not missing, f"missing {missing}: run scripts/setup.sh (apt: iproute2, iptables)"
    network = Network()
    try:
        network.create()
        why = iptables_works(network.add_host("probe"))
    finally:
        network.close()
    assert not why, f"iptables does not work in a network namespace: {why}"


@pytest.fixture
def record_result(request: pytest.FixtureRequest) -> Callable[[RunResult], None]:
    """Keep a schedule's result for the session's table."""
    return request.config.stash.setdefault(RESULTS, []).append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    results = terminalreporter.config.stash.get(RESULTS, [])
    if not results:
        return
    terminalreporter.section("fault schedules")
    terminalreporter.write_line(table(results))
    write_json(results, REPORT_PATH)
    terminalreporter.write_line(f"JSON: {Path(REPORT_PATH)}")
