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
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/uplink.py

# The soaks of `make test`, long: line noise for ten minutes each, and the uplink chaos run
# with 20 server crashes and 20 gateway crashes (its figures are printed).
soak: setup
	TIM_SOAK_SECONDS=600 FIRMWARE_SOAK_SECONDS=600 $(BIN)/pytest -q --timeout 1500 \
		tests/tim_drivers/test_tim_soak.py tests/firmware -k soak
	CHAOS_PROSODY_KILLS=20 CHAOS_NCAP_KILLS=20 $(BIN)/pytest -q -s --timeout 1500 \
		tests/integration/test_chaos.py

# The .deb for Debian trixie / Raspberry Pi OS (ARCH=arm64 for the boards; see docs/deploy.md).
deb: setup
	packaging/build-deb.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
