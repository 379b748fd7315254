"""The ``operator`` autoscaling engine's loop: scrape the fleet, decide (``autoscaler``), scale.

Each tick reads what the watch caches hold (the Deployment, the server pods, the registered
endpoints), scrapes the ready ones' ``/metrics``, and sets the Deployment's replicas through the
scale subresource when the decision changes them, with a ``Scaling`` Event saying why.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from . import conditions, fleet_load, metrics, profiles
from .autoscaler import Bounds, Decision, Scaler
from .kube import KubeError
from .reconcile import post_event
from .settings import OperatorSettings

logger = logging.getLogger(__name__)
STATUS_INTERVAL = 30.0  # the load in status is refreshed this often; a scaling decision at once


def bounds(spec: Any) -> Bounds:
    profile = profiles.resolve(spec)
    return Bounds(
        spec.replicas.min,
        spec.replicas.max,
        profile.target_in_progress_requests,
        profile.load_window_seconds,
        profile.scale_behavior,
    )


def _first(index: Mapping[Any, Any], key: tuple[str, str]) -> Any:
    return next(iter(index.get(key, ())), None)


async def tick(
    memo: kopf.Memo, indexes: Mapping[str, Any], reranker: dict[str, Any], settings: OperatorSettings
) -> bool:
    """One look at the fleet; True when the Reranker's status should be written now."""
    meta = reranker["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
    spec, problems = conditions.validate(reranker.get("spec") or {}, settings.reranker_image)
    deployment = _first(indexes["owned_deployments"], (namespace, name))
    if spec is None or problems or deployment is None or meta.get("deletionTimestamp"):
        return False
    current = int((deployment.get("spec") or {}).get("replicas") or 1)  # the API server defaults it to 1
    pods = fleet_load.pod_targets(indexes["server_pods"].get((namespace, name), ()), spec.scheme)
    registered = [e for e in indexes["registered_endpoints"].get((namespace, name), ())
                  if not e["metadata"].get("deletionTimestamp")]  # fmt: skip
    externals = fleet_load.endpoint_targets(registered)
    sample, loads = await fleet_load.sample(memo.http, pods, externals, current, settings.scrape_timeout)
    for target in externals:
        if (load := loads[target]) is not None:
            metrics.ENDPOINT_LOAD.labels(namespace, name, target.name).set(load)
    if failed := [t.url for t, load in loads.items() if load is None]:
        logger.info("%s/%s: could not read %s (no scale-down this tick)", namespace, name, ", ".join(failed))
    scalers: dict[str, Scaler] = memo.scalers
    scaler = scalers.setdefault(uid, Scaler())
    decision = scaler.decide(time.monotonic(), current, sample, bounds(spec))
    _export(namespace, name, decision)
    scaling: dict[str, dict[str, Any]] = memo.scaling
    previous = scaling.get(uid) or {}
    last_scale = previous.get("lastScale")
    if decision.changed:
        try:
            await memo.kube.scale("Deployment", namespace, name, decision.replicas)
        except KubeError as exc:
            logger.error("%s/%s: scaling to %d failed: %s", namespace, name, decision.replicas, exc)
            return False
        message = f"scaled from {decision.current} to {decision.replicas}: {decision.reason}"
        logger.info("%s/%s: %s", namespace, name, message)
        await post_event(memo.kube, reranker, "Scaling", message, kind="Normal")
        last_scale = {"time": _now(), "from": decision.current, "to": decision.replicas, "reason": decision.reason}
    scaling[uid] = status = _status(decision, last_scale)
    written: dict[str, float] = memo.scaling_written
    due = decision.changed or time.monotonic() - written.get(uid, -STATUS_INTERVAL) >= STATUS_INTERVAL
    if due and status != previous:
        written[uid] = time.monotonic()
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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
