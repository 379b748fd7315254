# syntax=docker/dockerfile:1
# Targets:
#   server    reranker-server (CPU torch by default; --build-arg TORCH_VARIANT=cuda for CUDA)
# Build:  docker build --target server -t reranker-server .
ARG PYTHON_BASE=python:3.11-slim-bookworm

FROM ${PYTHON_BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 reranker \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/reranker reranker
WORKDIR /app

FROM base AS server
# TORCH_INDEX_URL: a wheel index with CPU-only torch builds keeps the image small; empty uses
# the default index (CUDA builds on Linux x86_64).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    else pip install "$TORCH_SPEC"; fi
COPY pyproject.toml README.md ./
COPY server ./server
COPY operator ./operator
RUN pip install ".[server]"
ENV HF_HOME=/models/hf \
    HF_HUB_OFFLINE=1 \
    HOST=0.0.0.0 \
    PORT=8000
RUN mkdir -p /models/hf && chown -R 10001:10001 /models
VOLUME ["/models"]
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["reranker-server"]
