"""The operator's Prometheus metrics: each Reranker's replicas and fleet, the autoscaler's
decisions, and each external endpoint's probe and load (what the chart's dashboard draws).

Served on ``METRICS_PORT`` (``/metrics``); label sets are removed when their Reranker or
endpoint goes, so a deleted Reranker leaves no flat line behind.
"""

from __future__ import annotations

import contextlib
import logging

from prometheus_client import Counter, Gauge, start_http_server

logger = logging.getLogger(__name__)
_RERANKER = ["namespace", "reranker"]
_ENDPOINT = ["namespace", "reranker", "endpoint"]

REPLICAS = Gauge("reranker_operator_replicas", "Server pods the Deployment asks for.", _RERANKER)
READY_REPLICAS = Gauge("reranker_operator_ready_replicas", "Server pods ready.", _RERANKER)
FLEET_SIZE = Gauge("reranker_operator_fleet_size", "Ready pods plus ready external endpoints.", _RERANKER)
DESIRED_REPLICAS = Gauge(
    "reranker_operator_autoscaler_desired_replicas", "Replicas the operator engine's last decision wants.", _RERANKER
)
LOAD = Gauge(
    "reranker_operator_autoscaler_load",
    "Requests in progress + queued over the fleet, averaged over the window (operator engine).",
    _RERANKER,
)
DECISIONS = Counter(
    "reranker_operator_autoscaler_decisions",
    "The operator engine's decisions, by what it did and why.",
    [*_RERANKER, "action", "cause"],
)
ENDPOINT_READY = Gauge("reranker_operator_endpoint_ready", "1 while an external endpoint is in rotation.", _ENDPOINT)
ENDPOINT_PROBE_SECONDS = Gauge(
    "reranker_operator_endpoint_probe_seconds", "How long an external endpoint's last /health probe took.", _ENDPOINT
)
ENDPOINT_LOAD = Gauge(
    "reranker_operator_endpoint_load", "An external endpoint's requests in progress + queued, last scraped.", _ENDPOINT
)
_PER_RERANKER = (REPLICAS, READY_REPLICAS, FLEET_SIZE, DESIRED_REPLICAS, LOAD)
_PER_ENDPOINT = (ENDPOINT_READY, ENDPOINT_PROBE_SECONDS, ENDPOINT_LOAD)


def serve(port: int) -> None:
    try:
        start_http_server(port)
    except OSError as exc:  # metrics are for people; reconciling goes on without them
        logger.error("cannot serve /metrics on port %d: %s", port, exc)


def reranker_status(namespace: str, name: str, replicas: int, ready: int, fleet_size: int | None) -> None:
    REPLICAS.labels(namespace, name).set(replicas)
    READY_REPLICAS.labels(namespace, name).set(ready)
    if fleet_size is not None:
        FLEET_SIZE.labels(namespace, name).set(fleet_size)


def forget_reranker(namespace: str, name: str) -> None:
    for gauge in _PER_RERANKER:
        _remove(gauge, namespace, name)


def forget_endpoint(namespace: str, reranker: str, endpoint: str) -> None:
    for gauge in _PER_ENDPOINT:
        _remove(gauge, namespace, reranker, endpoint)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        metric.remove(*labels)
