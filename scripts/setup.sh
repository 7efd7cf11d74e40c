#!/usr/bin/env bash
# Make .venv with geocache and its test tools, and make sure redis-server is on the
# machine (the tests compare replies with it and use it as an origin).
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.geocache-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
# The fault tests (tests/faults) put nodes in network namespaces and cut links with
# iptables; both live in sbin, which a non-root PATH may lack.
have_sbin() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# Node.js runs the cluster-aware Node clients (ioredis, node-redis) in tests/cluster.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
have_sbin ip || need_apt+=(iproute2)
have_sbin iptables || need_apt+=(iptables)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "geocache: please install ${need_apt[*]} (Debian/Ubuntu: sudo apt-get install redis-server redis-tools)" >&2
        exit 1
    fi
fi

# The Node.js cluster clients, pinned by tests/cluster/node/package-lock.json.
node_dir=tests/cluster/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi
