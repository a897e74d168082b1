# maskseg-d2 — `make help` lists the targets. Everything runs inside .venv (created on first use).
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
EXP    ?= demo
ARGS   ?=
RUN    ?= $(shell ls -td outputs/*/runs/*/ 2>/dev/null | head -1)
INPUT  ?= datasets/demo/images
# SYSTEM_SITE=1: let the venv see an official Detectron2 (and the torch it was built against) installed
# outside it; torch/torchvision pins are then left to that installation.
SYSTEM_SITE ?= 0

.PHONY: help setup test test-fast test-gpu lint demo data train resume eval predict visualize export sweep doctor clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: EXP=$(EXP) ARGS='hydra overrides' RUN=<run dir> INPUT=<images> SYSTEM_SITE=0|1"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml scripts/install_detectron2.py
	@test -x $(PY) || $(PYTHON) -m venv $(if $(filter 1,$(SYSTEM_SITE)),--system-site-packages) $(VENV)
	@if [ "$(SYSTEM_SITE)" = 1 ]; then \
	  grep -vE '^(torch|torchvision)==' requirements-dev.txt | sed 's|^-r requirements.txt|-r .venv/req-nontorch.txt|' > $(VENV)/req-dev.txt; \
	  grep -vE '^(torch|torchvision)==' requirements.txt > $(VENV)/req-nontorch.txt; \
	  $(PY) -m pip install -q -r $(VENV)/req-dev.txt; \
	else $(PY) -m pip install -q -r requirements-dev.txt; fi
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/install_detectron2.py
	@touch $@

setup: $(STAMP) ## Create/reuse .venv: pinned deps, Detectron2 (official kept, else registry copy), this package

test: setup ## Whole suite: slow (tiny CPU training) + integration (installs Label Studio); 25 slowest listed
	$(PY) -m pytest -q --durations=25 $(ARGS)

test-fast: setup ## Tests without the slow (tiny training runs) and integration (Label Studio installs) ones
	$(PY) -m pytest -q -m "not slow and not integration" $(ARGS)

test-gpu: setup ## The CUDA tests only (AMP training + resume, fp16 prediction); skipped without a GPU
	$(PY) -m pytest -q -m gpu -rs $(ARGS)

lint: setup ## ruff (pyflakes + pycodestyle, pyproject.toml); also run by the tests (tests/test_lint.py)
	$(PY) -m ruff check .

data: setup ## Build the embedded demo dataset under datasets/demo (kept if unchanged)
	$(PY) tools/make_demo_data.py

demo: data ## setup + demo data + train + COCO eval + masked images, on CPU (see README for time/AP)
	$(PY) tools/train.py experiment=demo $(ARGS)

train: setup ## Train: make train EXP=cars_signs ARGS="solver.base_lr=0.01"
	$(PY) tools/train.py experiment=$(EXP) $(ARGS)

resume: setup ## Continue a run (default: the newest): make resume RUN=<dir> ARGS="solver.max_iter=800"
	$(PY) tools/train.py resume=$(if $(filter file,$(origin RUN)),last,$(RUN)) $(ARGS)

eval: setup ## Evaluate a run (default: the latest): make eval RUN=outputs/demo/runs/<dir>
	$(PY) tools/eval.py run=$(RUN) $(ARGS)

predict: setup ## Masked images for a folder: make predict RUN=<run dir> INPUT=<image|folder>
	$(PY) tools/predict.py run=$(RUN) input=$(INPUT) $(ARGS)

visualize: setup ## Ground truth / predictions / curves: make visualize ARGS="mode=gt_vs_pred run=<run>"
	$(PY) tools/visualize.py $(ARGS)

export: setup ## Export a run (TorchScript/ONNX, checked vs eager): make export RUN=<run> ARGS="format=onnx"
	$(PY) tools/export.py run=$(RUN) $(ARGS)

sweep: setup ## Hydra multirun: make sweep EXP=demo ARGS="solver.base_lr=0.01,0.02"
	$(PY) tools/train.py -m experiment=$(EXP) $(ARGS)

doctor: setup ## Print Detectron2 source, compiled ops, torch/CUDA, W&B mode
	$(PY) -m maskseg_d2.doctor

clean: ## Remove caches and outputs (keeps .venv and datasets/; `rm -rf .venv` for a full reset)
	rm -rf outputs multirun .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
