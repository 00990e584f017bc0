# The README's two commands: `make demo` (set up + run the main job) and `make test` (set up + tests).
# Each one does the whole set-up on a fresh machine: a virtualenv in .venv, install, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SWAV   := $(VENV)/bin/swavbench
DATA   := data/synth

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Main job: synthetic data, then the 1n8c pre-train config with the CPU profile as 8 gloo ranks through
# paddle.distributed.launch (logs in ./log/workerlog.0..7), judged by the harness, ending in an HTML report.
demo: setup
	$(PY) -m swavbench.cli demo

test: setup
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -m "not gpu" --swavbench-session-baselines

lint: setup
	$(VENV)/bin/ruff check swavbench tests cases benchmarks conftest.py

bench: setup
	$(PY) benchmarks/step_overhead.py

clean:
	rm -rf log output reports/runs reports/*.html reports/*.sqlite data
