"""What a Reranker owns: every child it wants, how to tell its children apart, and what to prune.

Pure: the reconcile hands in the spec, the resolved profile and what the watch caches hold, and
gets back the manifests to apply and the children to delete. Every child carries the Reranker as
its controlling owner reference (the garbage collector removes them with it) and the
``managed-by`` label the operator's watches select on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reranker_contract.api import API_VERSION, RERANKER_KIND

from . import endpoints, fleet, model_cache, resources
from .models import RerankerSpec
from .profiles import HardwareProfile
from .resources import Manifest, Owner

# Every kind a Reranker may own. The operator watches each (labels: MANAGED_LABELS) into a cache.
OWNED_KINDS: tuple[str, ...] = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                "NetworkPolicy", "EndpointSlice", "PersistentVolumeClaim", "Job",
                                "ScaledObject", "ConfigMap")  # fmt: skip
# Created once and then left alone: a Job's template and most of a claim's spec are immutable
# (an apply that changes them is refused), and a new model gets a new claim and Job by name.
CREATE_ONLY_KINDS = frozenset({"PersistentVolumeClaim", "Job"})
MANAGED_LABELS = {"app.kubernetes.io/managed-by": resources.MANAGED_BY}
ChildKey = tuple[str, str]  # (kind, name)


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


def cache_access_mode(spec: RerankerSpec, cluster: ClusterFacts) -> model_cache.AccessMode:
    assert spec.model.cache is not None
    return model_cache.access_mode(spec.model, cluster.provisioner(spec.model.cache.pvc.storage_class_name))


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


def desired_children(
    owner: Owner,
    spec: RerankerSpec,
    profile: HardwareProfile,
    image: str,
    default_redis_url: str | None,
    registered: list[dict[str, Any]],
    operator_namespace: str | None = None,
    cluster: ClusterFacts = ClusterFacts(),
    live: Mapping[ChildKey, dict[str, Any]] | None = None,
) -> dict[ChildKey, Manifest]:
    """Every child that should exist now, by (kind, name); what is absent should not exist.

    ``registered``: the RerankerEndpoints naming this Reranker. With any, ``<name>-external``
    exists, and the probed ones are listed in EndpointSlices of both Services. ``live``: the
    children as the caches hold them (a ReadWriteOnce model cache pins the pods to its node).
    """
    cache_node = None
    cache_children: list[Manifest | None] = []
    if spec.model.cache is not None:
        mode = cache_access_mode(spec, cluster)
        claim = (live or {}).get(("PersistentVolumeClaim", model_cache.claim_name(owner.name, spec.model)))
        cache_node = model_cache.pinned_node(claim, mode)
        cache_children = resources.model_cache_children(owner, spec, profile, image, mode)
    deployment = (live or {}).get(("Deployment", owner.name))
    wanted: list[Manifest | None] = [
        resources.deployment(owner, spec, profile, image, default_redis_url, cache_node),
        fleet.config_map(owner, spec, fleet.size(deployment, registered)),
        *cache_children,
        resources.service(owner, spec, profile),
        resources.hpa(owner, spec, profile, cluster.served_metrics),
        _scaled_object(owner, spec, profile, cluster),
        resources.pdb(owner, spec, profile),
        resources.network_policy(owner, spec, profile, operator_namespace),
    ]
    if registered:
        members = [m for m in (endpoints.slice_member(e, spec.scheme) for e in registered) if m is not None]
        wanted.append(endpoints.external_service(owner, spec.service.port))
        for service in (owner.name, f"{owner.name}-external"):
            wanted += endpoints.endpoint_slices(owner, service, members)
    return {(m["kind"], m["metadata"]["name"]): m for m in wanted if m is not None}


def _scaled_object(
    owner: Owner, spec: RerankerSpec, profile: HardwareProfile, cluster: ClusterFacts
) -> Manifest | None:
    address = keda_address(spec, cluster)
    if autoscaler_problem(spec, cluster) or address is None or spec.autoscaling.engine != "keda":
        return None
    return resources.scaled_object(owner, spec, profile, address)


def controller_name(child: dict[str, Any]) -> str | None:
    """The name of the Reranker that controls ``child``, if one does."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == RERANKER_KIND and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("name"))
    return None


def owned_by(child: dict[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in (child.get("metadata") or {}).get("ownerReferences") or [])


def endpoint_counts(registered: list[dict[str, Any]]) -> dict[str, int]:
    """status.externalEndpoints: how many are registered, and how many serve now."""
    ready = sum(1 for e in registered if endpoints.rotation(e) == (True, True))
    return {"ready": ready, "total": len(registered)}


@dataclass(frozen=True)
class Plan:
    apply: list[Manifest]  # missing, or differing from what we want
    delete: list[ChildKey]  # ours, and no longer wanted


def plan(
    desired: dict[ChildKey, Manifest],
    live: dict[ChildKey, dict[str, Any]],
    owner_uid: str,
    scope: Callable[[ChildKey], bool] | None = None,
) -> Plan:
    """What to send so that ``live`` becomes ``desired`` (within ``scope``): nothing when they agree."""
    apply = [
        m
        for key, m in desired.items()
        if key not in live or (key[0] not in CREATE_ONLY_KINDS and not contains(live[key], m))
    ]
    delete = [key for key, child in live.items() if key not in desired and owned_by(child, owner_uid)]
    if scope is not None:
        apply = [m for m in apply if scope((m["kind"], m["metadata"]["name"]))]
        delete = [key for key in delete if scope(key)]
    return Plan(apply, delete)


def _empty(value: Any) -> bool:
    # the API server drops empty strings, maps and lists it is sent (Go's omitempty)
    return value in ("", None) or value == {} or value == []


def _same_quantity(live: Any, desired: Any) -> bool:
    """'1000m' and '1', '1Gi' and '1024Mi': the API server stores quantities in canonical form."""
    if not isinstance(live, str | int | float) or not isinstance(desired, str | int | float):
        return False
    from kubernetes.utils import parse_quantity

    try:
        return bool(parse_quantity(live) == parse_quantity(desired))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        return False


def contains(live: Any, desired: Any) -> bool:
    """Does ``live`` hold every field ``desired`` sets, with the same value?

    The API server adds defaults (a container's terminationMessagePath, a Service's clusterIP)
    and others' fields; those don't count as drift. Lists must match element by element.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(contains(live[k], v) if k in live else _empty(v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if live == desired and type(live) is type(desired):
        return True
    return _same_quantity(live, desired) and not isinstance(desired, bool)
