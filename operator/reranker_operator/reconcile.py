"""One idempotent reconcile: the desired state, applied; what is no longer wanted, pruned; one status patch.

Called for create, update, resume, changes of children and endpoints, and the drift timer alike.
It reads nothing from the API: what exists comes from the watch caches (``Observed``), so a
Reranker whose children already agree with its spec costs no request at all, and a status that
did not change is not written again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reranker_operator import clock, cluster, conditions, crash_loop, metrics, ownership, profiles, validation
from reranker_operator.builders import children as child_builders
from reranker_operator.builders import common, fleet, model_cache, network
from reranker_operator.builders.scaling import LOAD_METRICS
from reranker_operator.cluster import ClusterFacts
from reranker_operator.events import post_event
from reranker_operator.kube import Kube, KubeError
from reranker_operator.models import RerankerSpec, with_hub_endpoint, with_rate_limits
from reranker_operator.settings import OperatorSettings
from reranker_operator.state import RerankerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """What the watch caches hold for one Reranker."""

    children: dict[child_builders.ChildKey, dict[str, Any]]  # live children, by (kind, name)
    endpoints: list[dict[str, Any]]  # RerankerEndpoints naming it (none on their way out)
    # Which children this reconcile may touch (None: all). A child's watch event repairs that
    # child alone: its siblings may simply not have reached the cache yet, and re-applying them
    # on every sibling's event cost ~1 extra request per child while 100 Rerankers were created.
    scope: Callable[[child_builders.ChildKey], bool] | None = None
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    pods: list[dict[str, Any]] = field(default_factory=list)  # its server pods, as the pod index trims them


async def _converge(kube: Kube, owner: common.Owner, todo: ownership.Plan) -> dict[str, Any] | None:
    """Apply and prune; returns the Deployment as the API server answered, when it was applied."""
    deployment = None
    for manifest in todo.apply:
        logger.info("applying %s %s/%s", manifest["kind"], owner.namespace, manifest["metadata"]["name"])
        applied = await kube.apply(manifest)
        if manifest["kind"] == "Deployment":
            deployment = applied
    for kind, name in todo.delete:
        logger.info("deleting %s %s/%s: %s no longer wants it", kind, owner.namespace, name, owner.name)
        await kube.delete(kind, owner.namespace, name)
    return deployment


def _autoscaling_status(
    spec: RerankerSpec, desired: dict[child_builders.ChildKey, common.Manifest], name: str, look: dict[str, Any] | None
) -> dict[str, Any]:
    """The engine and what it scales on now (the HPA: request metrics only where they are served)."""
    engine = spec.autoscaling.engine
    if not spec.autoscaling.enabled:
        return {"enabled": False, "engine": engine, "metrics": []}
    if engine == "hpa":
        hpa = desired[("HorizontalPodAutoscaler", name)]
        names = [m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"]
                 for m in hpa["spec"]["metrics"]]  # fmt: skip
        return {"enabled": True, "engine": engine, "metrics": names}
    if engine == "keda":
        served = ("ScaledObject", name) in desired
        return {"enabled": served, "engine": engine, "metrics": list(LOAD_METRICS) if served else []}
    return {"enabled": True, "engine": engine, "metrics": list(LOAD_METRICS)} | (look or {})


def _unchanged(current: dict[str, Any], update: dict[str, Any]) -> bool:
    return all(current.get(key) == value for key, value in update.items())


async def reconcile(
    kube: Kube, settings: OperatorSettings, body: dict[str, Any], observed: Observed, state: RerankerState
) -> list[conditions.Condition]:
    """Apply what the spec wants, prune what it no longer does, and write the status once."""
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation") or 1)
    owner = common.Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))
    spec, problems = validation.validate(body.get("spec") or {}, settings.reranker_image)
    apply_error: str | None = None
    deployment = observed.children.get(("Deployment", name))
    cache: model_cache.CacheState | None = None
    autoscaler_problem: str | None = None
    status: dict[str, Any] = {"observedGeneration": generation}
    if spec is not None and not problems:
        spec = with_rate_limits(with_hub_endpoint(spec, settings.default_hub_endpoint), settings.default_rate_limits)
        profile = profiles.resolve(spec)
        image = spec.image or settings.reranker_image or ""
        inputs = child_builders.BuildInput(
            owner,
            spec,
            profile,
            image,
            settings.default_redis_url,
            observed.endpoints,
            settings.operator_namespace,
            observed.cluster,
            observed.children,
        )
        desired = child_builders.desired_children(inputs)
        todo = ownership.plan(desired, observed.children, owner.uid, observed.scope)
        try:
            deployment = await _converge(kube, owner, todo) or deployment
        except KubeError as exc:
            apply_error = str(exc)
            logger.error("applying children of %s/%s failed: %s", namespace, name, exc)
        status["profile"] = profiles.summary(profile)
        status["url"] = network.service_url(owner, spec)
        status["externalEndpoints"] = ownership.endpoint_counts(observed.endpoints)
        status["fleetSize"] = fleet.size(deployment, observed.endpoints)
        status["autoscaling"] = _autoscaling_status(spec, desired, name, state.autoscaler.scaling)
        autoscaler_problem = cluster.autoscaler_problem(spec, observed.cluster)
        if spec.model.cache is not None:
            job = observed.children.get(("Job", model_cache.job_name(name, spec.model)))
            cache = model_cache.state(job, state.load_progress)
            claim = model_cache.claim_name(name, spec.model)
            status["modelCache"] = cache.status(claim, model_cache.cache_access_mode(spec, observed.cluster))
        else:
            status["modelCache"] = None  # a merge patch: removes what an earlier spec left
    computed = conditions.compute(
        generation=generation,
        problems=problems,
        apply_error=apply_error,
        deployment=deployment,
        min_replicas=spec.replicas.min if spec else 1,
        cache=cache,
        autoscaler_problem=autoscaler_problem,
        crash=crash_loop.crash_of(observed.pods),
    )
    current = body.get("status") or {}
    previous = current.get("conditions") or []
    status["conditions"] = conditions.render(computed, generation, previous, clock.stamp())
    deploy_status = (deployment or {}).get("status") or {}
    status["replicas"] = int(deploy_status.get("replicas") or 0)
    status["readyReplicas"] = int(deploy_status.get("readyReplicas") or 0)
    status["replicaSummary"] = f"{status['readyReplicas']}/{status['replicas']}"
    metrics.reranker_status(namespace, name, status["replicas"], status["readyReplicas"], status.get("fleetSize"))
    if _unchanged(current, status) or status == state.last_status:
        return computed
    try:
        await kube.patch_status("Reranker", namespace, name, status)
        state.last_status = status
    except KubeError as exc:
        if exc.status != 404:
            raise
        logger.info("%s/%s was deleted while reconciling", namespace, name)
        return computed

    degraded = next(c for c in computed if c.type == "Degraded")
    was: dict[str, Any] = next((c for c in previous if c.get("type") == "Degraded"), {})
    if degraded.status and (was.get("reason"), was.get("message")) != (degraded.reason, degraded.message):
        await post_event(kube, body, degraded.reason, degraded.message)  # once per new problem, not per drift check
    return computed
