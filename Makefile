# Entry points. `make repro` and `make test` set everything up from nothing.
SHELL := /bin/bash
VENV := .venv
# The prediction-only install: emotion-predict on the ONNX runtime folder, no training stack.
PREDICT_VENV := .venv-predict
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Air-gapped machines: use a Hugging Face Hub cache laid beside the checkout, if any.
# Online users need nothing: the stages use plain Hub ids and the standard Hub client.
HF_CACHE := $(abspath ../shared/hf-cache)
ifneq ($(wildcard $(HF_CACHE)/README.md),)
export HF_HUB_CACHE := $(HF_CACHE)
export HF_HUB_OFFLINE := 1
endif

.PHONY: setup setup-dev setup-review setup-predict repro test test-quick lint bench profile bench-predict bench-onnx bench-openvino serve bench-serve bench-serving-frameworks bench-label bench-large-input bench-onednn review \
	ci-review push pull remote-status seeds train-worker check-python clean-venv

setup: $(VENV)/.installed          ## the pipeline and emotion-predict (Python only)
setup-dev: $(VENV)/.installed-dev  ## + test and lint tools
setup-review: setup node_modules/.installed  ## + the Vega libraries of the review report
setup-predict: $(PREDICT_VENV)/.installed  ## emotion-predict and emotion-serve alone (ONNX Runtime), in .venv-predict

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "error: Python 3.11 is needed; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." \
	       "Run with PYTHON=/path/to/python3.11." >&2; exit 1; }

# One pip command: the project (editable, which puts `emotion-predict` on PATH) with its
# pipeline extra, every version fixed by the pins of requirements.txt used as constraints
# (separate installs break transformers).
$(VENV)/.installed: requirements.txt requirements-predict.txt requirements-serve.txt pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip==26.3
	$(VENV)/bin/pip install --quiet -c requirements.txt -e ".[pipeline,serve,openvino,cluster]"
	touch $@

# The prediction-only install as a user gets it: the project built as a wheel and installed
# with its predict and serve extras (pins of requirements-predict.txt as constraints), not editable, so
# the suite's prediction-only test also tests the packaging. Rebuilt when the library changes.
LIBRARY := $(shell find emotion -name '*.py')
$(PREDICT_VENV)/.installed: requirements-predict.txt requirements-serve.txt pyproject.toml $(LIBRARY) emotion/serving/page.html | check-python
	$(PYTHON) -m venv $(PREDICT_VENV)
	$(PREDICT_VENV)/bin/pip install --quiet --upgrade pip==26.3
	rm -rf $(PREDICT_VENV)/wheel
	$(PREDICT_VENV)/bin/pip wheel --quiet --no-deps --wheel-dir $(PREDICT_VENV)/wheel .
	$(PREDICT_VENV)/bin/pip uninstall --quiet --yes emotion-pipeline
	$(PREDICT_VENV)/bin/pip install --quiet -c requirements-predict.txt -c requirements-serve.txt \
	  "$$(ls $(PREDICT_VENV)/wheel/emotion_pipeline-*.whl)[predict,serve]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

# Vega libraries for the offline plots page of `make review` (pinned by package-lock.json).
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js) is needed for the review" \
	  "report's offline plots page; install Node.js" >&2; exit 1; }
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

repro: setup  ## run the whole pipeline (about 55 min on 2 CPU cores)
	dvc repro

# Two pytest-xdist workers, tests handed out one by one, those sharing a fixture run of their
# own as one unit (--dist loadgroup; docs/development.md); the 15 slowest and the total end
# every run.
test: setup-dev setup-review setup-predict  ## lint + the test suite (about 8-9 min on 2 cores of an Intel Xeon; docs/development.md)
	ruff check emotion stages tests benchmarks tools
	lint-imports --no-cache
	python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder --durations=15

test-quick: setup-dev  ## the tests that run no DVC, no stage and no training (~55 s)
	python -m pytest -m "not pipeline"

# ruff, and the import boundaries of pyproject.toml's [tool.importlinter] (the prediction
# package loads no training stack; the library imports no stage, tool or benchmark).
lint: setup-dev
	ruff check emotion stages tests benchmarks tools
	lint-imports --no-cache

BASE ?= main
review: setup-review  ## compare BASE (branch/tag/commit/experiment) with the workspace -> review/
	python -m tools.review --base $(BASE) --out review

# For pull requests: the same report from the committed results (nothing is trained), plus a
# check that they belong to the committed code; exits 1 naming the stale stages if not.
ci-review: setup-review
	python -m tools.review --base $(BASE) --out review --ci

# DVC's push / pull / status --cloud with the remote checked first: a server that does not
# answer, rejected or missing credentials, or a missing bucket is one line naming the remote
# (ARGS: -r NAME, and any dvc option; docs/sharing.md).
push: setup  ## dvc push, a remote problem told in one line
	python -m tools.remote push $(ARGS)

pull: setup  ## dvc pull, a remote problem told in one line
	python -m tools.remote pull $(ARGS)

remote-status: setup  ## dvc status --cloud: what the remote lacks
	python -m tools.remote status $(ARGS)

# Seed spread: each recipe's metrics as mean ± std over the seeds run as experiments, ranked
# by mean validation loss (ARGS: --rev REV, -n NUM, --all-commits, --out FILE).
seeds: setup  ## mean ± std over seeds of the experiments (ARGS="-n 3": of 3 commits)
	python -m tools.seeds $(ARGS)

bench: setup  ## training speed against the CPU's real matmul limit (~12 min on 2 cores)
	dvc repro tokenize
	python -m benchmarks.train_speed
	@if dvc status -q; then /usr/bin/time -f "no-op dvc repro: %es" dvc repro -q; \
	else echo "pipeline not up to date: no-op dvc repro not timed"; fi

# A non-chief host of a multi_worker run (README "Training on several GPUs or hosts"): the
# train stage outside DVC (it sets its own process up, as under DVC). TF_CONFIG names this
# host's task.
train-worker: setup  ## the train stage on a non-chief multi_worker host
	dvc repro tokenize
	python -m stages.train

profile: setup  ## where a training step's time goes, by kind of work (~3 min on 2 cores)
	dvc repro tokenize
	python -m benchmarks.profile_step $(ARGS)

# oneDNN on vs off for the train step, evaluate and export, alternated in fresh processes.
bench-onednn: setup  ## the measurement behind TF_ENABLE_ONEDNN_OPTS=1 (~20 min on 2 cores)
	dvc repro export
	python -m benchmarks.onednn $(ARGS)

bench-predict: setup  ## every prediction path side by side (~5 min on 2 cores)
	dvc repro export publish
	python -m benchmarks.predict_speed

bench-onnx: setup  ## threads and batch sizes of the ONNX graphs (~6 min on 2 cores)
	dvc repro publish
	python -m benchmarks.onnx_settings $(ARGS)

# OpenVINO (the `openvino` extra, in .venv) on the standard-op and fused graphs against ONNX
# Runtime: which graph OpenVINO should read (benchmarks/openvino_compare.py).
bench-openvino: setup  ## OpenVINO vs ONNX Runtime on the trained model (~3 min)
	dvc repro publish
	python -m benchmarks.openvino_compare

serve: setup  ## emotion-serve on models/onnx, http://127.0.0.1:8080 (docs/serving.md)
	dvc repro publish
	emotion-serve $(ARGS)

bench-serve: setup  ## emotion-serve under load: texts/s, latency, a burst (~3 min on 2 cores)
	dvc repro publish
	python -m benchmarks.serve_load $(ARGS)

bench-serving-frameworks: setup setup-predict  ## emotion-serve vs MLServer, same load (~6 min + installs)
	dvc repro publish
	python -m benchmarks.serving_frameworks $(ARGS)

bench-label: setup  ## emotion-label on Dask vs emotion-predict, 100,000 texts (~6 min on 2 cores)
	dvc repro publish
	python -m benchmarks.label_speed $(ARGS)

bench-large-input: setup  ## emotion-predict --input on 200,000 lines: memory and texts/s
	dvc repro publish
	python -m benchmarks.large_input $(ARGS)

clean-venv:
	rm -rf $(VENV) $(PREDICT_VENV)
