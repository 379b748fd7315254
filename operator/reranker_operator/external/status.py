"""Probe a Reranker's external endpoints and write what each probe found to its status.

Which endpoints are listed in the Reranker's EndpointSlices is the reconcile's job: it follows
the status written here through the RerankerEndpoint watch.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from reranker_contract.endpoint import EndpointSpec, lease_expired
from reranker_operator import clock, metrics
from reranker_operator.conditions import Condition, render
from reranker_operator.external import endpoints
from reranker_operator.external.probe import health_url, probe
from reranker_operator.kube import Kube
from reranker_operator.models import scheme_of

logger = logging.getLogger(__name__)


async def probe_endpoint(
    kube: Kube,
    http: httpx.AsyncClient,
    body: dict[str, Any],
    reranker: dict[str, Any] | None,
    thresholds: endpoints.Thresholds,
    probe_timeout: float,
) -> endpoints.EndpointState:
    """Probe one RerankerEndpoint of ``reranker`` (None: there is no such Reranker) and write its status."""
    meta, spec = body["metadata"], EndpointSpec.from_manifest(body)
    namespace = meta["namespace"]
    previous = body.get("status") or {}
    status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1), "lastProbeTime": clock.stamp()}
    try:
        endpoints.address_type(spec.address)
        address_problem = None
    except ValueError as exc:
        address_problem = str(exc)
    if reranker is None:
        state = endpoints.refused("RerankerNotFound", f"no Reranker {spec.reranker!r}")
    elif address_problem:
        state = endpoints.refused("InvalidAddress", address_problem)
    elif spec.scheme != (fleet := scheme_of(reranker.get("spec") or {})):
        state = endpoints.refused(
            "SchemeMismatch", f"serves {spec.scheme}, the Reranker's pods serve {fleet}: one Service, one scheme"
        )
    elif spec.lease_name and lease_expired(await kube.get("Lease", namespace, spec.lease_name), clock.now()):
        state = endpoints.refused("LeaseExpired", f"Lease {spec.lease_name} was not renewed: the server is gone")
    else:
        model = (reranker.get("spec") or {}).get("model") or {}
        url = health_url(spec.scheme, spec.address, spec.port)
        result = await probe(http, url, probe_timeout, spec.ca_bundle)
        state = endpoints.evaluate(previous, result, model.get("name", ""), model.get("revision"), thresholds)
        status.update(
            {k: v for k, v in {"backend": result.backend, "device": result.device, "model": result.model}.items() if v}
        )
        if result.latency_ms is not None:
            status["latencyMs"] = round(result.latency_ms, 1)
    if reranker is not None and "fleetSize" in (reranker.get("status") or {}):
        status["fleetSize"] = reranker["status"]["fleetSize"]  # the machine divides its rate limits by it
    metrics.ENDPOINT_READY.labels(namespace, spec.reranker, meta["name"]).set(1 if state.ready else 0)
    if status.get("latencyMs") is not None:
        metrics.ENDPOINT_PROBE_SECONDS.labels(namespace, spec.reranker, meta["name"]).set(status["latencyMs"] / 1000)
    status["consecutiveFailures"] = state.failures
    status["consecutiveSuccesses"] = state.successes
    status["conditions"] = render(
        [Condition("Ready", state.ready, state.reason, state.message)],
        int(meta.get("generation", 1)),
        previous.get("conditions") or [],
        clock.stamp(),
    )
    await kube.patch_status("RerankerEndpoint", namespace, meta["name"], status)
    return state
