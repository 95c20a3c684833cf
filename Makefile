# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PROTOS := $(wildcard proto/gate/v1/*.proto)
STUBS := proto/gate/v1/.generated

.PHONY: setup demo test lint clean

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
