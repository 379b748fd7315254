"""The ``operator`` autoscaling engine's loop: scrape the fleet, decide (``decision``), scale.

Each tick reads what the watch caches hold (the Deployment, the server pods, the registered
endpoints), scrapes the ready ones' ``/metrics``, and sets the Deployment's replicas through the
scale subresource when the decision changes them, with a ``Scaling`` Event saying why.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from reranker_operator import clock, metrics, profiles, validation
from reranker_operator.autoscale import fleet_load
from reranker_operator.autoscale.decision import Bounds, Decision, Scaler
from reranker_operator.events import post_event
from reranker_operator.kube import Kube, KubeError
from reranker_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)
STATUS_INTERVAL = 30.0  # the load in status is refreshed this often; a scaling decision at once


@dataclass
class Memory:
    """What the engine remembers of one Reranker between ticks."""

    scaler: Scaler = field(default_factory=Scaler)  # recent samples, recommendations, changes
    scaling: dict[str, Any] | None = None  # the last look, for the status: load, desired, last scale
    written: float = -math.inf  # when that look was last written to the status (monotonic)


@dataclass(frozen=True)
class Fleet:
    """One Reranker's fleet as the watch caches hold it."""

    reranker: dict[str, Any]
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)  # its server pods
    registered: list[dict[str, Any]] = field(default_factory=list)  # its RerankerEndpoints, none on their way out


def bounds(spec: Any) -> Bounds:
    profile = profiles.resolve(spec)
    return Bounds(
        spec.replicas.min,
        spec.replicas.max,
        profile.target_in_progress_requests,
        profile.load_window_seconds,
        profile.scale_behavior,
    )


async def tick(memory: Memory, kube: Kube, http: httpx.AsyncClient, fleet: Fleet, settings: OperatorSettings) -> bool:
    """One look at the fleet; True when the Reranker's status should be written now."""
    reranker, deployment = fleet.reranker, fleet.deployment
    meta = reranker["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec, problems = validation.validate(reranker.get("spec") or {}, settings.reranker_image)
    if spec is None or problems or deployment is None or meta.get("deletionTimestamp"):
        return False
    current = int((deployment.get("spec") or {}).get("replicas") or 1)  # the API server defaults it to 1
    pods = fleet_load.pod_targets(fleet.pods, spec.scheme)
    externals = fleet_load.endpoint_targets(fleet.registered)
    sample, loads = await fleet_load.sample(http, pods, externals, current, settings.scrape_timeout)
    for target in externals:
        if (load := loads[target]) is not None:
            metrics.ENDPOINT_LOAD.labels(namespace, name, target.name).set(load)
    if failed := [t.url for t, load in loads.items() if load is None]:
        logger.info("%s/%s: could not read %s (no scale-down this tick)", namespace, name, ", ".join(failed))
    decision = memory.scaler.decide(time.monotonic(), current, sample, bounds(spec))
    _export(namespace, name, decision)
    previous = memory.scaling or {}
    last_scale = previous.get("lastScale")
    if decision.changed:
        try:
            await kube.scale("Deployment", namespace, name, decision.replicas)
        except KubeError as exc:
            logger.error("%s/%s: scaling to %d failed: %s", namespace, name, decision.replicas, exc)
            return False
        message = f"scaled from {decision.current} to {decision.replicas}: {decision.reason}"
        logger.info("%s/%s: %s", namespace, name, message)
        await post_event(kube, reranker, "Scaling", message, kind="Normal")
        last_scale = {"time": clock.stamp(), "from": decision.current, "to": decision.replicas,
                      "reason": decision.reason}  # fmt: skip
    memory.scaling = status = _status(decision, last_scale)
    due = decision.changed or time.monotonic() - memory.written >= STATUS_INTERVAL
    if due and status != previous:
        memory.written = time.monotonic()
        return True
    return False


def _export(namespace: str, name: str, decision: Decision) -> None:
    metrics.DESIRED_REPLICAS.labels(namespace, name).set(decision.replicas)
    if decision.load is not None:
        metrics.LOAD.labels(namespace, name).set(decision.load)
    action = "hold" if not decision.changed else ("up" if decision.replicas > decision.current else "down")
    metrics.DECISIONS.labels(namespace, name, action, decision.cause).inc()


def _status(decision: Decision, last_scale: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {"load": f"{decision.load:.1f}" if decision.load is not None else None,
                              "desiredReplicas": decision.replicas}  # fmt: skip
    if last_scale:
        status["lastScale"] = last_scale
    return status
