#!/usr/bin/env bash
# Make .venv with geocache and its test tools, and make sure redis-server is on the
# machine (the tests compare replies with it and use it as an origin), with
# redis-benchmark and wrk (the benchmarks' load generators: scripts/test.sh smoke-runs
# every bench/*.py), and Chromium with its driver (the dashboard's browser test).
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
    # The node's dependencies are the `server` extra; the tests run nodes.
    .venv/bin/python -m pip install --quiet -e '.[server,test]'
    touch "$stamp"
fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# The fault tests (tests/faults) put nodes in network namespaces and cut links with
# iptables; both live in sbin, which a non-root PATH may lack.
have_sbin() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# Node.js runs the cluster-aware Node clients (ioredis, node-redis) in tests/cluster.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
have_sbin ip || need_apt+=(iproute2)
have_sbin iptables || need_apt+=(iptables)
# The dashboard's browser test drives headless Chromium through its driver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # Another apt run may hold the lock for a while: wait up to 5 minutes for it.
        apt_opts=(-o DPkg::Lock::Timeout=300)
        apt-get "${apt_opts[@]}" update -qq
        DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
            "${need_apt[@]}" >/dev/null
    else
        echo "geocache: please install ${need_apt[*]} (Debian/Ubuntu: sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi

# The Node.js cluster clients, pinned by tests/cluster/node/package-lock.json.
node_dir=tests/cluster/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi
