"""How the pods are reached: the Service, its URL, and spec.networkPolicy's NetworkPolicy."""

from __future__ import annotations

from reranker_operator.builders.common import CONTAINER_PORT, Manifest, Owner, metadata, selector_labels
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import HardwareProfile


def service(owner: Owner, spec: RerankerSpec, profile: HardwareProfile) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(owner.name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_url(owner: Owner, spec: RerankerSpec) -> str:
    return f"{spec.scheme}://{owner.name}.{owner.namespace}.svc:{spec.service.port}"


def network_policy(
    owner: Owner, spec: RerankerSpec, profile: HardwareProfile, operator_namespace: str | None
) -> Manifest | None:
    """Only the listed peers, and the operator's namespace (probes, metrics), reach the pods."""
    if spec.network_policy is None:
        return None
    peers = [
        {k: v for k, v in {"namespaceSelector": p.namespace_selector, "podSelector": p.pod_selector}.items() if v}
        for p in spec.network_policy.allow_from
    ]
    if operator_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}]}],
        },
    }
