#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check, run the whole test suite with coverage,
# and smoke-run every benchmark (scripts/bench-quick.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check src tests bench
ruff format --check src tests bench
echo "== mypy"
mypy
echo "== pytest"
rm -f .coverage .coverage.*
# Node processes started by the tests write their own coverage files (patch = subprocess).
coverage run -m pytest -p no:cacheprovider "$@"
coverage combine -q
coverage report --fail-under=75 | tail -n 3
echo "== bench --quick"
scripts/bench-quick.sh
