"""Pure status logic: turn children's state into Reranker conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reranker_operator.builders.model_cache import CacheState
from reranker_operator.crash_loop import ServerCrash


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def _deployment_conditions(deployment: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    status = (deployment or {}).get("status") or {}
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def compute(
    *,
    generation: int,
    problems: list[str],
    apply_error: str | None,
    deployment: dict[str, Any] | None,
    min_replicas: int,
    cache: CacheState | None = None,
    autoscaler_problem: str | None = None,
    crash: ServerCrash | None = None,
) -> list[Condition]:
    """Ready, Progressing and Degraded from what the operator knows now; ModelCached with a cache."""
    computed = _compute(generation, problems, apply_error, deployment, min_replicas, cache, crash)
    degraded = next(c for c in computed if c.type == "Degraded")
    if autoscaler_problem and not degraded.status:  # the pods serve; only scaling is missing
        computed = [c for c in computed if c.type != "Degraded"]
        computed.append(Condition("Degraded", True, "AutoscalerUnavailable", autoscaler_problem))
    if cache is None:
        return computed
    reason = {"Cached": "Cached", "Loading": "Loading", "Failed": "LoadFailed"}[cache.phase]
    return [*computed, Condition("ModelCached", cache.phase == "Cached", reason, cache.message)]


def _compute(
    generation: int,
    problems: list[str],
    apply_error: str | None,
    deployment: dict[str, Any] | None,
    min_replicas: int,
    cache: CacheState | None,
    crash: ServerCrash | None,
) -> list[Condition]:
    if problems:
        message = "; ".join(problems)
        return [
            Condition("Ready", False, "InvalidSpec", message),
            Condition("Progressing", False, "InvalidSpec", "waiting for a valid spec"),
            Condition("Degraded", True, "InvalidSpec", message),
        ]
    if apply_error:
        return [
            Condition("Ready", False, "ApplyFailed", apply_error),
            Condition("Progressing", False, "ApplyFailed", "children could not be applied"),
            Condition("Degraded", True, "ApplyFailed", apply_error),
        ]
    status = (deployment or {}).get("status") or {}
    desired = (deployment or {}).get("spec", {}).get("replicas") or min_replicas
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0)
    deploy_generation = int((deployment or {}).get("metadata", {}).get("generation") or 0)
    dconds = _deployment_conditions(deployment)

    failure = dconds.get("ReplicaFailure", {})
    # new pods wait for a model still loading: that outlasting the progress deadline is no fault
    loading = cache is not None and cache.phase == "Loading"
    stalled = dconds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" and not loading
    if cache is not None and cache.phase == "Failed":
        degraded = Condition("Degraded", True, "ModelLoadFailed", cache.message)
    elif crash is not None:
        degraded = Condition("Degraded", True, crash.reason, crash.message)
    elif failure.get("status") == "True":
        degraded = Condition("Degraded", True, "ReplicaFailure", failure.get("message", "pods cannot be created"))
    elif stalled:
        degraded = Condition("Degraded", True, "ProgressDeadlineExceeded", dconds["Progressing"].get("message", ""))
    else:
        degraded = Condition("Degraded", False, "AsExpected", "no problems seen")

    rolling = deployment is None or observed < deploy_generation or updated < desired or ready < desired
    progressing = (
        Condition("Progressing", True, "LoadingModel", cache.message)
        if loading and cache is not None
        else Condition("Progressing", True, "RollingOut", f"{updated}/{desired} updated, {ready} ready")
        if rolling
        else Condition("Progressing", False, "Reconciled", f"generation {generation} rolled out")
    )
    if ready >= min_replicas:
        ready_cond = Condition("Ready", True, "MinimumReplicasReady", f"{ready} replicas ready")
    else:
        ready_cond = Condition("Ready", False, "WaitingForReplicas", f"{ready}/{min_replicas} replicas ready")
    return [ready_cond, progressing, degraded]


def render(
    conditions: list[Condition], generation: int, previous: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Kubernetes condition dicts; lastTransitionTime only moves when the status flips."""
    before = {c.get("type"): c for c in previous}
    rendered = []
    for cond in conditions:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = (
            old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else now
        )
        rendered.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return rendered
