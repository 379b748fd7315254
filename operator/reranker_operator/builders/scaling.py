"""How the fleet scales: the HPA or KEDA ScaledObject on the servers' load metrics, and the PDB."""

from __future__ import annotations

from typing import Any

from reranker_operator.builders.common import Manifest, Owner, metadata, selector_labels
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import HardwareProfile


def _pods_metric(name: str, average: int) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(average)}},
    }


# Used when the cluster serves none of the request metrics and the profile scales on no CPU.
FALLBACK_CPU_UTILIZATION = 70


def hpa(
    owner: Owner, spec: RerankerSpec, profile: HardwareProfile, served_metrics: frozenset[str] = frozenset()
) -> Manifest | None:
    """``served_metrics``: the pod metrics the cluster's custom-metrics API serves. An HPA naming a
    metric nobody serves reports it invalid and then never scales down, so only served ones go in;
    with none, it scales on CPU."""
    if not spec.autoscaling.enabled or spec.autoscaling.engine != "hpa":
        return None
    wanted = [("reranker_requests_in_progress", profile.target_in_progress_requests),
              ("reranker_queue_depth", profile.target_queue_depth)]  # fmt: skip
    metrics: list[dict[str, Any]] = [
        _pods_metric(name, target) for name, target in wanted if target is not None and name in served_metrics
    ]
    cpu = profile.target_cpu_utilization or (None if metrics else FALLBACK_CPU_UTILIZATION)
    if cpu is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": spec.replicas.min,
            "maxReplicas": spec.replicas.max,
            "metrics": metrics,
            "behavior": profile.scale_behavior,
        },
    }


LOAD_METRICS = ("reranker_requests_in_progress", "reranker_queue_depth")


def load_query(owner: Owner) -> str:
    """PromQL: requests in progress + queued over the Reranker's pods (Deployment pod names:
    <name>-<template hash>-<5 chars>, so another Reranker named <name>-x never matches)."""
    names = "|".join(LOAD_METRICS)
    pods = f"{owner.name}-[a-z0-9]+-[a-z0-9]{{5}}"
    return f'sum({{__name__=~"{names}",namespace="{owner.namespace}",pod=~"{pods}"}})'


def scaled_object(owner: Owner, spec: RerankerSpec, profile: HardwareProfile, server_address: str) -> Manifest:
    """The keda engine: KEDA's HPA scales on the same load the operator engine reads, via Prometheus."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicaCount": spec.replicas.min,
            "maxReplicaCount": spec.replicas.max,
            "pollingInterval": 15,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": profile.scale_behavior}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": server_address,
                        "query": load_query(owner),
                        "threshold": str(profile.target_in_progress_requests),
                    },
                }
            ],
        },
    }


def pdb(owner: Owner, spec: RerankerSpec, profile: HardwareProfile) -> Manifest | None:
    """Only with two or more replicas: a PDB on one replica would block node drains forever."""
    if spec.replicas.min < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner.name)}},
    }
