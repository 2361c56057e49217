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

.PHONY: setup repro test lint bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# One pip command for the whole pinned set (separate installs break transformers).
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

repro: setup  ## run the whole pipeline (about 45-50 min on 2 CPU cores)
	dvc repro

test: setup  ## lint + the test suite (a few minutes)
	ruff check stages tests
	python -m pytest

lint: setup
	ruff check stages tests

clean-venv:
	rm -rf $(VENV)
