#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the local demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/geocache demo "$@"
