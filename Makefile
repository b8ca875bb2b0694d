# Set-up on a fresh machine: `make quickstart` (main job) and `make test` (tests) install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install quickstart test demo lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

quickstart: install
	$(VENV)/bin/ccsc-reid quickstart

test: install
	$(PY) -m pytest

demo: install
	$(VENV)/bin/ccsc-reid demo

lint: install
	$(VENV)/bin/ruff check .

# Speed and memory figures against torchreid (benchmarks/README.md); installs the bench extra.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	for script in evaluator memory training extraction; do $(PY) benchmarks/bench_$$script.py || exit 1; done
