#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the local demo: three regions of three nodes joined
# through delay relays (flags pass through: --regions, --nodes-per-region, --duration).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/geocache demo "$@"
