# Entry points. `make repro` and `make test` set everything up from nothing.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Air-gapped machines: use a Hugging Face Hub cache laid beside the checkout, if any.
# Online users need nothing: the stages use plain Hub ids and the standard Hub client.
HF_CACHE := $(abspath ../shared/hf-cache)
ifneq ($(wildcard $(HF_CACHE)/README.md),)
export HF_HUB_CACHE := $(HF_CACHE)
export HF_HUB_OFFLINE := 1
endif

# Same glibc malloc settings as the train stage's command in dvc.yaml (see README).
MALLOC_ENV := MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=33554432 \
	MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456

.PHONY: setup repro test lint bench review clean-venv

setup: $(VENV)/.installed node_modules/.installed

# Vega libraries for the offline plots page of `make review` (pinned by package-lock.json).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# One pip command for the whole pinned set (separate installs break transformers).
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

repro: setup  ## run the whole pipeline (about 45-50 min on 2 CPU cores)
	dvc repro

test: setup  ## lint + the test suite (a few minutes)
	ruff check stages tests benchmarks tools
	python -m pytest

lint: setup
	ruff check stages tests benchmarks tools

BASE ?= main
review: setup  ## compare BASE (branch/tag/commit/experiment) with the workspace -> review/
	python -m tools.review --base $(BASE) --out review

bench: setup  ## training-speed benchmark on the real data (~10 min on 2 cores)
	dvc repro tokenize
	env $(MALLOC_ENV) python -m benchmarks.train_speed
	@if dvc status -q; then /usr/bin/time -f "no-op dvc repro: %es" dvc repro -q; \
	else echo "pipeline not up to date: no-op dvc repro not timed"; fi

clean-venv:
	rm -rf $(VENV)
