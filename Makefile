# `make demo` and `make test` create the virtual environment on first use and refresh it when pyproject.toml changes.
# A GPU user picks the torch build, e.g.:
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast demo bench style quality clean

# torch first, from $(TORCH_SPEC), so that the package's `torch>=2.4` never pulls a second build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# Reinstalls even when the environment is up to date (e.g. to switch the torch build).
install:
	rm -f $(STAMP)
	$(MAKE) $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not distributed"

demo: $(STAMP)
	$(BIN)/dsdr-trl demo

# DSDR over GRPO, measured side by side; writes outputs/bench/bench.json and bench.md (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

style: $(STAMP)
	$(BIN)/ruff format src tests benchmarks experiments
	$(BIN)/ruff check --fix src tests benchmarks experiments

quality: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks experiments
	$(BIN)/ruff check src tests benchmarks experiments

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache outputs
