"""One idempotent reconcile: read the Reranker, apply its children, write its status.

Called for create, update, resume, child changes and the drift timer alike; pure builders
decide, ``kube`` sends.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from . import conditions, external, profiles, resources
from .kube import Kube, KubeError
from .settings import OperatorSettings

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _apply_children(kube: Kube, owner: resources.Owner, desired: dict[str, Any]) -> dict[str, Any] | None:
    """Apply what should exist, delete what shouldn't (only if it is ours). Returns the Deployment."""
    deployment = None
    for kind, manifest in desired.items():
        if manifest is not None:
            applied = await kube.apply(manifest)
            if kind == "Deployment":
                deployment = applied
            continue
        existing = await kube.get(kind, owner.namespace, owner.name)
        owners = (existing or {}).get("metadata", {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in owners):
            await kube.delete(kind, owner.namespace, owner.name)
    return deployment


async def _warn(kube: Kube, body: dict[str, Any], reason: str, message: str) -> None:
    meta = body["metadata"]
    now = _now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning",
        "source": {"component": "reranker-operator"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create(event)
    except KubeError as exc:  # an Event is best effort; the condition already says it
        logger.warning("could not post event %s: %s", reason, exc)


async def reconcile(kube: Kube, settings: OperatorSettings, body: dict[str, Any]) -> list[conditions.Condition]:
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation") or 1)
    owner = resources.Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))
    spec, problems = conditions.validate(body.get("spec") or {}, settings.reranker_image)
    apply_error: str | None = None
    deployment: dict[str, Any] | None = None
    status: dict[str, Any] = {"observedGeneration": generation}
    if spec is not None and not problems:
        profile = profiles.resolve(spec)
        image = spec.image or settings.reranker_image or ""
        desired = resources.children(owner, spec, profile, image, settings.default_redis_url)
        try:
            deployment = await _apply_children(kube, owner, desired)
        except KubeError as exc:
            apply_error = str(exc)
            logger.error("applying children of %s/%s failed: %s", namespace, name, exc)
        status["profile"] = profiles.summary(profile)
        status["url"] = resources.service_url(owner, spec)
    min_replicas = spec.replicas.min if spec else 1
    computed = conditions.compute(
        generation=generation,
        problems=problems,
        apply_error=apply_error,
        deployment=deployment,
        min_replicas=min_replicas,
    )
    previous = (body.get("status") or {}).get("conditions") or []
    status["conditions"] = conditions.render(computed, generation, previous, _now())
    deploy_status = (deployment or {}).get("status") or {}
    status["replicas"] = int(deploy_status.get("replicas") or 0)
    status["readyReplicas"] = int(deploy_status.get("readyReplicas") or 0)
    status["replicaSummary"] = f"{status['readyReplicas']}/{status['replicas']}"
    try:
        await kube.patch_status("Reranker", namespace, name, status)
    except KubeError as exc:
        if exc.status != 404:
            raise
        logger.info("%s/%s was deleted while reconciling", namespace, name)
        return computed

    if spec is not None and not problems and apply_error is None:
        await external.sync_slices(kube, body)  # external endpoints join the (re)created Service

    degraded = next(c for c in computed if c.type == "Degraded")
    was: dict[str, Any] = next((c for c in previous if c.get("type") == "Degraded"), {})
    if degraded.status and (was.get("reason"), was.get("message")) != (degraded.reason, degraded.message):
        await _warn(kube, body, degraded.reason, degraded.message)  # once per new problem, not per drift check
    return computed
