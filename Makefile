# Two commands on a fresh machine: `make demo` and `make test`. Everything they need is here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c requirements/constraints.txt
PYTEST_ARGS ?=

.PHONY: demo test venv dev bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install; redone when the project's dependencies change.
$(VENV)/.runtime: $(BIN)/python pyproject.toml requirements/constraints.txt
	$(PIP) -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) -e '.[dev]'
	@touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(BIN)/opencem demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# Figures, not pass/fail: each script prints throughput and peak RSS against a baseline run alongside.
bench: $(VENV)/.dev
	$(BIN)/python benchmarks/simulate_ingest.py
	$(BIN)/python benchmarks/pm_xml.py
	$(BIN)/python benchmarks/ingest_csv.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/cei_separation.py
	$(BIN)/python benchmarks/leakage.py
	$(BIN)/python benchmarks/twin_baselines.py
	$(BIN)/python benchmarks/simulate_stream.py
	$(BIN)/python benchmarks/stream.py --rules 1000
	$(BIN)/python benchmarks/rules_scale.py
	$(BIN)/python benchmarks/alerts.py
	$(BIN)/python benchmarks/alert_latency.py

docs: $(VENV)/.runtime
	$(BIN)/opencem schema --markdown > docs/data-model.md

clean:
	rm -rf $(VENV) opencem-workspace .pytest_cache
