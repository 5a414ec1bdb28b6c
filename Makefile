# Two commands for users: `make demo` and `make test`. Both create .venv when missing and install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.climb-installed
# The CPU build of torch (a local wheel on our machines, the PyTorch CPU index elsewhere). Plain `torch==2.13.0`
# from PyPI is the multi-GB CUDA build: set TORCH_SPEC=torch==2.13.0 for GPU machines.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export CLIMB_HOME ?= $(CURDIR)/.climb
export DAGSTER_HOME ?= $(CLIMB_HOME)/dagster_home
# `make ui`: where the two UIs listen (climb_dagster/ui.py stops both on Ctrl-C or SIGTERM).
UI_HOST ?= 127.0.0.1
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000

.PHONY: install demo test test-fast ui lint bench-search clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		|| $(PY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: install
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m climb_dagster.demo

test: install
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m pytest

test-fast: install
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m pytest -m "not slow and not integration"

ui: install
	@mkdir -p $(DAGSTER_HOME)
	@exec $(PY) -m climb_dagster.ui --host $(UI_HOST) --dagster-port $(DAGSTER_PORT) --mlflow-port $(MLFLOW_PORT) \
		--mlflow-backend-store-uri "sqlite:///$(CLIMB_HOME)/mlflow.db"

lint: install
	$(VENV)/bin/ruff check climb_dagster climb_dagster_tests

bench-search: install
	$(PY) -m climb_dagster.bench search --pool-mixtures ../shared/regmix/train_mixture_1m.csv \
		--pool-scores ../shared/regmix/train_pile_loss_1m.csv --pool-mixtures ../shared/regmix/test_mixture_1m.csv \
		--pool-scores ../shared/regmix/test_pile_loss_1m.csv --budget 56 --seeds 10 --strategies climb,regmix,random

clean:
	rm -rf .climb
