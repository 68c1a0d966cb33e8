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

# torch first, from $(TORCH_SPEC), so that the package's `torch>=2.4` never pulls a second build. The install's output
# goes to a log, so that a first `make demo` prints the demo rather than the install; on failure its end is shown.
$(STAMP): pyproject.toml
	@echo "Installing $(TORCH_SPEC) and dsdr-trl[dev,demo,offline] into $(VENV) (a few minutes, once; log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip \
		&& $(BIN)/python -m pip install "$(TORCH_SPEC)" $(TORCH_INDEX) \
		&& $(BIN)/python -m pip install -e ".[dev,demo,offline]"; } > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; echo "Installing failed; the whole log is $(VENV)/install.log"; exit 1; }
	@touch $@

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
