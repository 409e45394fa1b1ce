# NCAP developer entry points. `make demo` and `make test` set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test unit lint bench soak clean deb

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
	$(BIN)/python bench/tim_link.py
	$(BIN)/python bench/modbus_rtu.py

# The line-noise soaks of `make test`, ten minutes each instead of seconds.
soak: setup
	TIM_SOAK_SECONDS=600 FIRMWARE_SOAK_SECONDS=600 $(BIN)/pytest -q --timeout 1500 \
		tests/tim_drivers/test_tim_soak.py tests/firmware -k soak

# The .deb for Debian trixie / Raspberry Pi OS (ARCH=arm64 for the boards; see docs/deploy.md).
deb: setup
	packaging/build-deb.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
