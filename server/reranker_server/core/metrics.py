"""Prometheus collectors, created once at import (the default registry is process-wide).

Stable names the operator's autoscaler targets (do not rename):
- ``reranker_requests_in_progress``: requests admitted and being scored.
- ``reranker_queue_depth``: requests waiting for admission.

With API processes apart from the engine (``API_PROCESSES``), every process writes its values
under ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up: a gauge's ``multiprocess_mode``
says how: the engine's counts are summed with the API processes' zeros; a state the API
processes set (Redis up, limits shared) is the last one set, since every process that imports
a gauge holds a value for it (0 where never set).
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REQUESTS = Counter("reranker_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"])
REQUEST_LATENCY = Histogram(
    "reranker_request_duration_seconds",
    "HTTP request latency by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
IN_PROGRESS = Gauge(
    "reranker_requests_in_progress", "Rerank requests admitted and being scored.", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge("reranker_queue_depth", "Rerank requests waiting for admission.", multiprocess_mode="livesum")
PENDING_SEQUENCES = Gauge(
    "reranker_pending_sequences", "Sequences waiting in the batcher.", multiprocess_mode="livesum"
)
REJECTED = Counter("reranker_rejected_requests", "Requests refused by admission control.", ["reason"])
BATCH_SIZE = Histogram("reranker_batch_size", "Sequences per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_TOKENS = Histogram(
    "reranker_batch_tokens",
    "Padded tokens per forward pass.",
    buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
)
FORWARD_SECONDS = Histogram("reranker_forward_seconds", "Time of one forward pass.", buckets=LATENCY_BUCKETS)
PAIRS_SCORED = Counter("reranker_pairs_scored", "(query, document) pairs scored, cached or computed.")
CACHE_HITS = Counter("reranker_cache_hits", "Score cache hits.", ["tier"])
CACHE_MISSES = Counter("reranker_cache_misses", "Score cache misses.")
CACHE_SIZE = Gauge("reranker_cache_entries", "Entries in the in-process score cache.", multiprocess_mode="livesum")
MODEL_INFO = Gauge(
    "reranker_model_info",
    "The served model (value 1).",
    ["model", "revision", "kind", "backend", "device", "dtype"],
    multiprocess_mode="livemax",
)
REDIS_UP = Gauge(
    "reranker_redis_up",
    "1 while the shared Redis cache answers (distributed mode).",
    multiprocess_mode="livemostrecent",
)
REDIS_ERRORS = Counter("reranker_redis_errors", "Failed Redis operations; scoring went on locally.", ["operation"])
REDIS_MISSES = Counter("reranker_redis_misses", "Pairs looked up in Redis and not found.")
REDIS_SHARED_COMPUTATIONS = Counter(
    "reranker_redis_shared_computations", "Pairs another replica was computing whose score this one took from Redis."
)
READY = Gauge(
    "reranker_ready", "1 when the model is loaded and the server admits requests.", multiprocess_mode="livemax"
)
KEY_REQUESTS = Counter("reranker_key_requests", "Rerank requests by API key (a hash of it, never the key).", ["key"])
KEY_PAIRS = Counter("reranker_key_pairs", "Pairs admitted past the rate limits, by API key hash.", ["key"])
RATE_LIMITED = Counter("reranker_rate_limited_requests", "Requests refused (429) by a rate limit.", ["key", "limit"])
RATE_LIMIT_SHARED = Gauge(
    "reranker_rate_limit_shared",
    "1 while rate limits are enforced fleet-wide in Redis; 0 while this server enforces its share.",
    multiprocess_mode="livemostrecent",
)
FLEET_SIZE = Gauge(
    "reranker_fleet_size",
    "Servers the fleet's rate limits are shared between, as last told.",
    multiprocess_mode="livemax",
)


def exposition() -> bytes:
    """The text /metrics serves: this process's metrics, or every live process's added up."""
    if not os.environ.get(MULTIPROCESS_DIR_ENV):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
