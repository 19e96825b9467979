# `make demo` and `make test` set everything up on a fresh machine (a virtual environment in
# .venv with torch, the package and its test tools), then run the demo, or the linter, the test
# suite and the documentation's strict build.
# torch is installed first, pinned, so that pip keeps it: on a CPU machine the default pin takes
# the CPU wheel; on a GPU machine pass e.g. TORCH="torch==2.13.0" from an index with CUDA builds.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup demo test test-slurm test-site clean

$(BIN)/pyrodip: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/pyrodip

demo: setup
	$(BIN)/pyrodip run

# The suite runs on one process per core (pytest-xdist), each test on one thread.
test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n auto --dist worksteal
	$(BIN)/mkdocs build --strict

# Studies on a real SLURM cluster: starts a single-node one on this machine (as root, from
# Debian's slurm-wlm and munge), then runs the tests marked slurm.
test-slurm: setup
	bash .ci/slurm/start.sh
	$(BIN)/pytest -m slurm -s tests/experiments/test_slurm_cluster.py

# The built site as a reader sees it at 1280 px (docs/check_site.py), in Debian's chromium,
# which this installs (as root) when it is missing.
test-site: setup
	command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
	$(BIN)/mkdocs build --strict
	$(BIN)/python docs/check_site.py site

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis
