"""Keep a Reranker's external endpoints probed and its EndpointSlices current."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import httpx

from . import endpoints, resources
from .conditions import Condition, render
from .kube import Kube, KubeError
from .models import RerankerSpec
from .probe import health_url, probe

logger = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def lease_expired(lease: dict[str, Any] | None, now: datetime.datetime) -> bool:
    """No Lease, or not renewed within its duration."""
    if lease is None:
        return True
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    renewed_at = datetime.datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    return now > renewed_at + datetime.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


async def probe_endpoint(
    kube: Kube,
    http: httpx.AsyncClient,
    body: dict[str, Any],
    thresholds: endpoints.Thresholds,
    probe_timeout: float,
) -> endpoints.EndpointState:
    """Probe one RerankerEndpoint and write its status."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace = meta["namespace"]
    previous = body.get("status") or {}
    status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1), "lastProbeTime": _stamp(_now())}
    reranker = await kube.get("Reranker", namespace, spec.get("rerankerRef", {}).get("name", ""))
    try:
        endpoints.address_type(spec.get("address", ""))
        address_problem = None
    except ValueError as exc:
        address_problem = str(exc)
    if reranker is None:
        state = endpoints.refused("RerankerNotFound", f"no Reranker {spec.get('rerankerRef', {}).get('name')!r}")
    elif address_problem:
        state = endpoints.refused("InvalidAddress", address_problem)
    elif spec.get("leaseName") and lease_expired(await kube.get("Lease", namespace, spec["leaseName"]), _now()):
        state = endpoints.refused("LeaseExpired", f"Lease {spec['leaseName']} was not renewed: the server is gone")
    else:
        model = (reranker.get("spec") or {}).get("model") or {}
        url = health_url(spec.get("scheme", "http"), spec["address"], int(spec.get("port", 8000)))
        result = await probe(http, url, probe_timeout)
        state = endpoints.evaluate(previous, result, model.get("name", ""), model.get("revision"), thresholds)
        status.update(
            {k: v for k, v in {"backend": result.backend, "device": result.device, "model": result.model}.items() if v}
        )
        if result.latency_ms is not None:
            status["latencyMs"] = round(result.latency_ms, 1)
    status["consecutiveFailures"] = state.failures
    status["consecutiveSuccesses"] = state.successes
    status["conditions"] = render(
        [Condition("Ready", state.ready, state.reason, state.message)],
        int(meta.get("generation", 1)),
        previous.get("conditions") or [],
        _stamp(_now()),
    )
    await kube.patch_status("RerankerEndpoint", namespace, meta["name"], status)
    return state


def rotation(endpoint: dict[str, Any]) -> tuple[bool, bool] | None:
    """(listed in slices, ready) as the endpoint's status says now; None before its first probe."""
    ready = next((c for c in (endpoint.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return None
    return ready.get("reason") not in endpoints.REFUSING_REASONS, ready.get("status") == "True"


def _member(item: dict[str, Any]) -> endpoints.SliceMember | None:
    """A RerankerEndpoint as a slice member, or None when it is refused or not probed yet."""
    spec, status = item.get("spec") or {}, item.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("reason") in endpoints.REFUSING_REASONS:
        return None
    try:
        kind = endpoints.address_type(spec.get("address", ""))
    except ValueError:
        return None
    return endpoints.SliceMember(
        name=item["metadata"]["name"],
        address=spec["address"],
        address_type=kind,
        port=int(spec.get("port", 8000)),
        ready=ready.get("status") == "True",
    )


async def sync_slices(kube: Kube, reranker: dict[str, Any]) -> dict[str, int]:
    """Apply the Reranker's external EndpointSlices and Service; delete stale slices.

    Returns the counts for the Reranker's status.externalEndpoints.
    """
    meta = reranker["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    owner = resources.Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))
    registered = [
        item
        for item in await kube.list("RerankerEndpoint", namespace)
        if (item.get("spec") or {}).get("rerankerRef", {}).get("name") == name
        and not item["metadata"].get("deletionTimestamp")
    ]
    members = [m for m in (_member(item) for item in registered) if m is not None]
    desired: list[dict[str, Any]] = []
    if registered:
        port = RerankerSpec.model_validate(reranker.get("spec") or {}).service.port
        await kube.apply(endpoints.external_service(owner, port))
        for service in (name, f"{name}-external"):
            desired += endpoints.endpoint_slices(owner, service, members)
    else:
        existing = await kube.get("Service", namespace, f"{name}-external")
        owners = (existing or {}).get("metadata", {}).get("ownerReferences") or []
        if any(r.get("uid") == owner.uid for r in owners):
            await kube.delete("Service", namespace, f"{name}-external")
    for manifest in desired:
        await kube.apply(manifest)
    wanted = {m["metadata"]["name"] for m in desired}
    selector = endpoints.slice_labels(name)
    for stale in await kube.list("EndpointSlice", namespace, endpoints.slice_selector(name)):
        stale_labels = stale["metadata"].get("labels") or {}
        if stale_labels.items() >= selector.items() and stale["metadata"]["name"] not in wanted:
            await kube.delete("EndpointSlice", namespace, stale["metadata"]["name"])
    counts = {"ready": sum(m.ready for m in members), "total": len(registered)}
    try:
        await kube.patch_status("Reranker", namespace, name, {"externalEndpoints": counts})
    except KubeError as exc:
        if exc.status != 404:
            raise
    return counts
