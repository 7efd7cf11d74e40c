# The README's two commands: `make demo` and `make test`.
.PHONY: demo test bench lint soak

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/setup.sh
	.venv/bin/python -m pip install --quiet -e '.[server,test,bench]'
	.venv/bin/python bench/resp.py
	.venv/bin/python bench/store.py

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

# Random fault schedules (root: network namespaces): `make soak N=20`, replay `make soak SEED=1234`;
# `FIRST=1` runs the seeds 1..N, `HOG=1` adds contention.
N ?= 5
soak:
	scripts/setup.sh
	.venv/bin/python scripts/soak.py --runs $(N) $(if $(SEED),--seed $(SEED)) $(if $(FIRST),--first-seed $(FIRST)) $(if $(HOG),--cpu-hog $(HOG))
