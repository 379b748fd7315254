"""Every child a Reranker wants now, from one ``BuildInput``; what is absent should not exist."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reranker_operator.builders import deployment, fleet, model_cache, network, scaling
from reranker_operator.builders.common import Manifest, Owner
from reranker_operator.cluster import ClusterFacts, autoscaler_problem, keda_address
from reranker_operator.external import endpoints
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import HardwareProfile

ChildKey = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class BuildInput:
    """All a Reranker's children are built from."""

    owner: Owner
    spec: RerankerSpec
    profile: HardwareProfile
    image: str
    default_redis_url: str | None = None
    # the RerankerEndpoints naming this Reranker: with any, <name>-external exists, and the probed
    # ones are listed in EndpointSlices of both Services
    registered: list[dict[str, Any]] = field(default_factory=list)
    operator_namespace: str | None = None  # its NetworkPolicy admits the operator's namespace
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    # the children as the caches hold them (a ReadWriteOnce model cache pins the pods to its node;
    # the Deployment's ready count is the fleet's size)
    live: Mapping[ChildKey, dict[str, Any]] = field(default_factory=dict)


def desired_children(inputs: BuildInput) -> dict[ChildKey, Manifest]:
    """Every child that should exist now, by (kind, name)."""
    owner, spec, profile, image = inputs.owner, inputs.spec, inputs.profile, inputs.image
    cache_node = None
    cache_children: list[Manifest | None] = []
    if spec.model.cache is not None:
        mode = model_cache.cache_access_mode(spec, inputs.cluster)
        claim = inputs.live.get(("PersistentVolumeClaim", model_cache.claim_name(owner.name, spec.model)))
        cache_node = model_cache.pinned_node(claim, mode)
        cache_children = model_cache.model_cache_children(owner, spec, profile, image, mode)
    wanted: list[Manifest | None] = [
        deployment.deployment(owner, spec, profile, image, inputs.default_redis_url, cache_node),
        fleet.config_map(owner, spec, fleet.size(inputs.live.get(("Deployment", owner.name)), inputs.registered)),
        *cache_children,
        network.service(owner, spec, profile),
        scaling.hpa(owner, spec, profile, inputs.cluster.served_metrics),
        _scaled_object(owner, spec, profile, inputs.cluster),
        scaling.pdb(owner, spec, profile),
        network.network_policy(owner, spec, profile, inputs.operator_namespace),
    ]
    if inputs.registered:
        members = [m for m in (endpoints.slice_member(e, spec.scheme) for e in inputs.registered) if m is not None]
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
    return scaling.scaled_object(owner, spec, profile, address)
