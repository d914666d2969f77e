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

.PHONY: demo test test-fast lint bench corpus robustness
demo: $(RUNTIME_VENV)/.installed
	$(RUNTIME_VENV)/bin/edgefusion demo $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# every test, the slow ones (marked `slow`: training, 60 s timelines, real-time replays) included
test: lint
	$(VENV)/bin/python -m pytest -q

# the quick loop while editing: everything but the `slow` tests
test-fast: lint
	$(VENV)/bin/python -m pytest -q -m "not slow"

# The latency report for both reference packages (bench/out/<package>/: JSON, Markdown, PNG plots)
bench: $(VENV)/.installed
	for p in smart_home driving; do \
	  $(VENV)/bin/edgefusion bench $$p --configs onnxruntime:fp32,onnxruntime:int8,torch:fp32 --threads 2 \
	    --peak --out bench/out/$$p || exit 1; \
	done

# Real recordings (Debian sound packages + espeak-ng speech) into runs/corpus: 16 kHz WAV + provenance.json
corpus: $(VENV)/.installed
	apt-cache show lomiri-sounds >/dev/null 2>&1 || apt-get update
	command -v espeak-ng >/dev/null || (apt-get update && apt-get install -y --no-install-recommends espeak-ng)
	$(VENV)/bin/python -m export.corpus prepare --cache runs/corpus

# The robustness table of both reference packages (bench/results/robustness.{json,md})
robustness: corpus
	$(VENV)/bin/python bench/robustness.py
