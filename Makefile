# NCAP developer entry points. `make demo` and `make test` set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test unit lint bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/ncap demo

test: setup lint
	$(BIN)/pytest -q

unit: setup
	$(BIN)/pytest -q -m "not integration"

bench: setup
	$(BIN)/python bench/readout_latency.py

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
