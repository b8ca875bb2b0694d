# Set-up on a fresh machine: `make quickstart` (main job) and `make test` (tests) install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
# The demo's browser tests drive Debian's chromium (Playwright's own browser download does not work offline).
CHROMIUM := /usr/bin/chromium
APT_INSTALL := apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

.PHONY: install browser quickstart test demo lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The real-crop step (cross-domain, near chance) runs only where the shared CUHK03 crops sit beside the checkout.
REAL_SET ?= ../shared/data/cuhk03-detected-mini

quickstart: install
	$(VENV)/bin/ccsc-reid quickstart$(if $(wildcard $(REAL_SET)/labels.csv), --real-set $(REAL_SET))

# The whole suite, browser tests included: a missing browser fails them instead of skipping them.
test: install browser
	CCSC_REQUIRE_BROWSER=1 $(PY) -m pytest

browser: $(CHROMIUM)

$(CHROMIUM):
	@if [ "$$(id -u)" -eq 0 ]; then $(APT_INSTALL); \
	elif sudo -n true 2>/dev/null; then sudo sh -c '$(APT_INSTALL)'; \
	else echo "make test: $(CHROMIUM) is missing (the demo's browser tests need it). Install it with:" >&2; \
	     echo "  sudo apt-get update && sudo apt-get install -y chromium" >&2; exit 1; fi

demo: install
	$(VENV)/bin/ccsc-reid demo

lint: install
	$(VENV)/bin/ruff check .

# Speed and memory figures against torchreid (benchmarks/README.md); installs the bench extra.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	for script in evaluator memory training extraction; do $(PY) benchmarks/bench_$$script.py || exit 1; done
