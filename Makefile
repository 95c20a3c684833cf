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

clean:
	rm -rf $(VENV) $(STUBS) proto/gate/v1/*_pb2*.py proto/gate/v1/*_pb2*.pyi
