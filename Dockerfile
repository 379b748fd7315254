# syntax=docker/dockerfile:1
# Targets:
#   server    reranker-server with torch (CPU build by default; TORCH_VARIANT=cuda for CUDA)
#   operator  reranker-operator (kopf), no torch
# Build:
#   docker build --target server   -t reranker-server .
#   docker build --target operator -t reranker-operator .
#   docker build --target server --build-arg BAKE_MODEL=BAAI/bge-reranker-base -t reranker-server:bge .
ARG PYTHON_BASE=python:3.11-slim-bookworm

FROM ${PYTHON_BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 reranker \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin reranker
WORKDIR /app

FROM base AS server
# TORCH_VARIANT=cpu installs from TORCH_INDEX_URL when one is given (a CPU-only wheel index keeps
# the image small); cuda installs the default index's build, which bundles CUDA.
ARG TORCH_VARIANT=cpu
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""
RUN if [ "$TORCH_VARIANT" = "cpu" ] && [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    else \
      pip install "$TORCH_SPEC"; \
    fi
# requirements-lock.txt: the versions the test suite passed with (torch is TORCH_SPEC's)
COPY pyproject.toml README.md requirements-lock.txt ./
COPY server ./server
COPY operator ./operator
COPY contract ./contract
RUN pip install -c requirements-lock.txt ".[server]" && rm -rf /app/server /app/operator /app/contract /app/build
# MALLOC_ARENA_MAX=2: glibc's per-thread arenas fragment under torch's varying tensor shapes;
# two arenas cut the server's resident memory by about a third (benchmarks/RESULTS.md).
ENV HF_HOME=/models/hf \
    HOST=0.0.0.0 \
    PORT=8000 \
    MALLOC_ARENA_MAX=2
# BAKE_MODEL: a Hugging Face id fetched at build time (verified, as the operator's loader does)
# into the image's cache, for clusters with no route to the hub; MODEL_NAME then defaults to it and
# the hub is never contacted at run time. BAKED_HUB_CACHE keeps it found when HF_HOME is moved
# (the operator puts HF_HOME on a scratch volume). HF_ENDPOINT: a private hub mirror to bake from.
ARG BAKE_MODEL=""
ARG HF_ENDPOINT=""
RUN mkdir -p /models/hf/hub \
 && if [ -n "$BAKE_MODEL" ]; then \
      HF_ENDPOINT="${HF_ENDPOINT:-https://huggingface.co}" \
        reranker-server download "$BAKE_MODEL" --cache-dir /models/hf/hub; \
    fi \
 && chown -R 10001:10001 /models
ENV MODEL_NAME=${BAKE_MODEL} \
    HF_HUB_OFFLINE=${BAKE_MODEL:+1} \
    BAKED_HUB_CACHE=/models/hf/hub
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["reranker-server"]

FROM base AS operator
COPY pyproject.toml README.md requirements-lock.txt ./
COPY server ./server
COPY operator ./operator
COPY contract ./contract
RUN pip install -c requirements-lock.txt ".[operator]" && rm -rf /app/server /app/operator /app/contract /app/build
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["reranker-operator"]
