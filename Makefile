# Two entry points for a fresh clone; each sets itself up.
#   make demo   runtime-only environment (numpy, OpenCV, ONNX Runtime; no torch), then the demo
#   make test   development environment (torch CPU build pinned by .ci/constraints.txt), lint, types, tests
PY ?= python3
VENV := .venv
RUNTIME_VENV := .venv-runtime
SOURCES := pyproject.toml $(shell find edgefusion -type f -not -path '*/__pycache__/*')

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c .ci/constraints.txt -e '.[dev]'
	touch $@

$(RUNTIME_VENV)/.installed: $(SOURCES)
	$(PY) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install -q .
	touch $@

.PHONY: demo test lint bench
demo: $(RUNTIME_VENV)/.installed
	$(RUNTIME_VENV)/bin/edgefusion demo $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest -q

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/model_latency.py
