# pdm-orchestration: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# HistGradientBoosting and BLAS spin-wait on 2 busy cores without this.
export OMP_NUM_THREADS ?= 1
# Local Dagster instance (run history in SQLite); a deployment points DAGSTER_HOME at dagster.yaml.
export DAGSTER_HOME ?= $(CURDIR)/.pdm/dagster

.PHONY: install demo dev test lint clean

install: $(STAMP)

# Installs exactly the tested versions: constraints.txt pins every package.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	touch $@

.env:
	cp .env.example .env

# The local instance: run history in SQLite under .pdm/dagster (see dagster.yaml for deployments).
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n' > $@

# The whole graph on the simulated plant in accelerated time (resets the local state in .pdm/).
demo: install .env $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/pdm-orch demo

# Simulator + Dagster UI (127.0.0.1:3000, with its daemon) + MLflow UI (127.0.0.1:5000).
dev: install .env $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/pdm-orch db upgrade
	$(BIN)/pdm-orch dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg check defs
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pdm .pytest_cache .ruff_cache *.egg-info
