#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check, run the whole test suite with coverage
# on the compiled hot path and the compiled modules' tests again in pure Python, build the
# sdist and wheel, and smoke-run every benchmark (scripts/bench-quick.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# This script tests both modes itself: the install is the compiled one.
unset GEOCACHE_PURE
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check src tests bench
ruff format --check src tests bench
echo "== mypy"
mypy
# The pure run: the tests that run every compiled module (geocache/compiled.py), the unit
# tests, the command tests and the RESP front end's, with GEOCACHE_PURE=1 (node processes
# the tests start inherit it). Extra arguments replace it with the same tests as the
# compiled run.
pure_tests=(tests/unit tests/compat tests/cluster/test_sim_cluster.py
    tests/cluster/test_router_unit.py tests/cluster/test_swim.py
    tests/integration/test_protocol.py tests/integration/test_redis_py.py)
[ "$#" -gt 0 ] && pure_tests=("$@")
echo "== pytest (compiled)"
rm -f .coverage .coverage.*
# Node processes started by the tests write their own coverage files (patch = subprocess).
# Coverage cannot see inside the compiled modules; the pure run below measures their
# source, and the two runs' data are combined. GEOCACHE_EXPECT_COMPILED fails the run
# (tests/unit/test_compiled.py) if the install fell back to pure Python.
GEOCACHE_EXPECT_COMPILED=1 coverage run -m pytest -p no:cacheprovider "$@"
echo "== pytest (pure Python: GEOCACHE_PURE=1)"
GEOCACHE_PURE=1 coverage run -m pytest -p no:cacheprovider "${pure_tests[@]}"
coverage combine -q
coverage report --fail-under=75 | tail -n 3
echo "== build"
# The sdist, then the wheel built from that sdist (python -m build's default): a file the
# sdist lacks fails here (tests/integration/test_install.py installs one into fresh venvs).
rm -rf dist
python -m build --quiet --outdir dist .
ls dist
echo "== bench --quick"
scripts/bench-quick.sh
