#!/usr/bin/env bash
# Make .venv with geocache and its test tools, and make sure redis-server is on the
# machine (the tests compare replies with it and use it as an origin), with
# redis-benchmark and wrk (the benchmarks' load generators: scripts/test.sh smoke-runs
# every bench/*.py), and Chromium with its driver (the dashboard's browser test).
# Safe to run again: it reinstalls only when what the install is made from changed.
#
# The install is editable, and mypyc compiles the hot path (setup.py) into .so files
# beside the sources in src/: Python imports a module's .so before its .py, so an edited
# compiled module would run its old code without a word. The stamp therefore holds a
# hash of pyproject.toml, setup.py, every source file and GEOCACHE_PURE (all sources, not
# only the compiled ones: mypyc may fold another module's Final constants into the C);
# when any differs, the old .so files are deleted and the install is made again (about
# 1-3 minutes of compiling; GEOCACHE_PURE=1 skips it and leaves no .so).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# apt_install PACKAGE...: as root with apt, install them; otherwise say what to install.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # Another apt run may hold the lock for a while: wait up to 5 minutes for it.
        local apt_opts=(-o DPkg::Lock::Timeout=300)
        apt-get "${apt_opts[@]}" update -qq
        DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq "$@" >/dev/null
    else
        echo "geocache: please install $* (Debian/Ubuntu: sudo apt-get install $*)" >&2
        exit 1
    fi
}
# mypyc (setup.py) compiles the hot path with a C compiler against Python's headers;
# without them the install is pure Python and make test's compiled run fails, saying so.
# First, so that the install below compiles.
need_cc=()
command -v cc >/dev/null 2>&1 || need_cc+=(gcc)
"$PYTHON" -c 'import os, sysconfig
raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
    need_cc+=(python3-dev)
if [ -z "${GEOCACHE_PURE:-}" ] && [ "${#need_cc[@]}" -gt 0 ]; then
    apt_install "${need_cc[@]}"
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.geocache-installed
wanted="$(find pyproject.toml setup.py src -name '*.py' -o -name '*.toml' | LC_ALL=C sort |
    xargs cat | sha256sum | cut -d' ' -f1) pure=${GEOCACHE_PURE:-}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    find src -name '*.so' -delete
    # The node's dependencies are the `server` extra; the tests run nodes.
    .venv/bin/python -m pip install --quiet -e '.[server,test]'
    echo "$wanted" >"$stamp"
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
# The container test (tests/deploy) builds the image with podman (runc: crun fails on
# hybrid cgroups) from a base image debootstrap makes, since no registry is reachable.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
have_sbin runc || command -v runc >/dev/null 2>&1 || need_apt+=(runc)
have_sbin debootstrap || need_apt+=(debootstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
    apt_install "${need_apt[@]}"
fi

# The Node.js cluster clients, pinned by tests/cluster/node/package-lock.json.
node_dir=tests/cluster/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi
