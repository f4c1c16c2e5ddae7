# Every target installs what it needs into .venv: a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/linreg.yaml

.PHONY: run test test-all bench bench-gpu device-wheels lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# The oracle extras: torch (CPU build, pinned) for the torch-equivalence tests, matplotlib for plots;
# ray and optuna for the sweep executors and tpe; mpi for the data-parallel tests (mpiexec -n 2 and -n 3).
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,oracle,plot,tensorboard,images,ray,optuna,mpi]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench,plot,mpi]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/trainkit train $(CONFIG)

PYTEST := $(BIN)/python -m pytest --cov=trainkit --cov-report=term:skip-covered --cov-fail-under=90

# Lint, then the suite with coverage (kept at 90% or more of trainkit/). Tests that need an
# oracle extra (torch) are skipped when it is missing.
test: $(VENV)/.installed-test
	$(BIN)/ruff check trainkit tests benchmarks
	$(BIN)/ruff format --check trainkit tests benchmarks
	$(PYTEST)

# What CI runs: the same, with the oracle extras installed; a test that needs one fails
# instead of skipping (TRAINKIT_TEST_ALL=1, see tests/conftest.py).
test-all: $(VENV)/.installed-all
	$(BIN)/ruff check trainkit tests benchmarks
	$(BIN)/ruff format --check trainkit tests benchmarks
	TRAINKIT_TEST_ALL=1 $(PYTEST)

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

# On a GPU machine (CuPy, torch with CUDA; no registry needed): `pytest -m gpu` and
# benchmarks/gpu.py in one go, about 8 minutes, with the machine's own Python (no .venv).
# CI has no GPU: there the gpu tests skip, test_device.py and test_cuda_kernels.py run.
bench-gpu:
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh

# The wheels a registry-less GPU/16-core machine lacks (pydantic, mpi4py + mpich), into .whl/,
# for scripts/device_check.sh there (issues 16 and 17).
device-wheels: $(VENV)/.installed-bench
	PYTHON=$(BIN)/python bash scripts/device_wheels.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check trainkit tests benchmarks
	$(BIN)/ruff format --check trainkit tests benchmarks

fmt: $(VENV)/.installed-test
	$(BIN)/ruff format trainkit tests benchmarks
	$(BIN)/ruff check --fix trainkit tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
