# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP) proto/gate/v1/matching_pb2.py
	$(PY) scripts/acquire_assets.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps mediapipe==1.2.3
	touch $@

proto/gate/v1/matching_pb2.py: proto/gate/v1/matching.proto $(STAMP)
	$(PY) scripts/gen_proto.py

demo: setup
	$(VENV)/bin/gatectl demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) proto/gate/v1/*_pb2*.py proto/gate/v1/*_pb2*.pyi
