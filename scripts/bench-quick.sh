#!/usr/bin/env bash
# Smoke-run every benchmark (bench/*.py --quick): tiny counts, a few seconds each, through
# the real code paths, so the README's reproduce commands never break silently. Not a
# measurement: the figures go to bench/results/quick/, never over a real run's.
# Runs them one after another (the machine has two cores); fails if any fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
# 120 s per benchmark: each takes under 30 s here; past this one is stuck.
PER_BENCH_TIMEOUT_S="${PER_BENCH_TIMEOUT_S:-120}"

logs=bench/results/quick
mkdir -p "$logs"
failed=()
# run NAME SCRIPT [ARGS...]: one smoke run, its output in $logs/NAME.out.
run() {
    local name="$1"
    shift
    local started=$SECONDS
    if timeout --kill-after=10 "$PER_BENCH_TIMEOUT_S" "$PYTHON" "$@" --quick \
        >"$logs/$name.out" 2>&1; then
        echo "$* --quick: ok in $((SECONDS - started)) s"
    else
        echo "$* --quick: FAILED (exit $?) after $((SECONDS - started)) s; its output:"
        tail -n 40 "$logs/$name.out"
        failed+=("$name")
    fi
}
for bench in bench/*.py; do
    name="$(basename "$bench" .py)"
    [ "$name" = _common ] && continue
    run "$name" "$bench"
done
# The TLS variants (issue 14): TLS costs against redis-server's, and regions on mutual TLS.
run resp-tls bench/resp.py --tls
run geo-tls bench/geo.py --tls
if [ "${#failed[@]}" -gt 0 ]; then
    echo "benchmarks that failed: ${failed[*]}" >&2
    exit 1
fi
