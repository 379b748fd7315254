"""What the reconcile knows of the cluster beyond the Reranker's own objects (custom metrics
served, storage classes, KEDA), and what follows from it for a spec (``cluster_discovery`` looks it up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reranker_operator.models import RerankerSpec


@dataclass(frozen=True)
class ClusterFacts:
    """What the reconcile knows of the cluster beyond the Reranker's own objects."""

    served_metrics: frozenset[str] = frozenset()  # pod metrics the custom-metrics API serves
    provisioners: Mapping[str, str] = field(default_factory=dict)  # StorageClass name -> provisioner
    default_storage_class: str | None = None
    keda: bool = False  # KEDA's ScaledObject API is served
    keda_prometheus: str | None = None  # the operator's default Prometheus for ScaledObjects

    def provisioner(self, storage_class: str | None) -> str | None:
        return self.provisioners.get(storage_class or self.default_storage_class or "")


def keda_address(spec: RerankerSpec, cluster: ClusterFacts) -> str | None:
    keda = spec.autoscaling.keda
    return (keda.server_address if keda else None) or cluster.keda_prometheus


def autoscaler_problem(spec: RerankerSpec, cluster: ClusterFacts) -> str | None:
    """Why the chosen engine can't scale this Reranker (its pods still serve), or None."""
    if not spec.autoscaling.enabled or spec.autoscaling.engine != "keda":
        return None
    if not cluster.keda:
        return ("spec.autoscaling.engine: keda needs KEDA (its ScaledObject API, keda.sh/v1alpha1, is not served "
                "here); install KEDA or use engine operator")  # fmt: skip
    if keda_address(spec, cluster) is None:
        return ("spec.autoscaling.keda.serverAddress: not set, and the operator has no default Prometheus "
                "(chart value autoscaling.keda.prometheusAddress)")  # fmt: skip
    return None
