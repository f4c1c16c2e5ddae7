# Every target installs what it needs into .venv: a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/linreg.yaml

.PHONY: run test bench lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench,plot]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/trainkit train $(CONFIG)

# Lint, then the suite with coverage (kept at 90% or more of trainkit/).
test: $(VENV)/.installed-test
	$(BIN)/ruff check trainkit tests benchmarks
	$(BIN)/ruff format --check trainkit tests benchmarks
	$(BIN)/python -m pytest --cov=trainkit --cov-report=term:skip-covered --cov-fail-under=90

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed-test
	$(BIN)/ruff check trainkit tests benchmarks
	$(BIN)/ruff format --check trainkit tests benchmarks

fmt: $(VENV)/.installed-test
	$(BIN)/ruff format trainkit tests benchmarks
	$(BIN)/ruff check --fix trainkit tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
