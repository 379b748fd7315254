"""Every resource and verb the operator uses, in one place.

The Helm chart's ClusterRole is checked against this list (tests/chart): it must grant all of
it and nothing more. "framework" rules are what kopf itself needs; "application" rules are
what the reconciler does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    api_group: str
    resource: str
    verbs: tuple[str, ...]
    purpose: str  # "framework" | "application"
    why: str


# A server-side apply that creates an object is authorized as ``create`` as well as ``patch``;
# every watch cache needs ``list`` and ``watch``.
_CHILD = ("list", "watch", "create", "patch", "delete")
RULES: tuple[Rule, ...] = (
    Rule("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), "framework",
         "kopf follows CRDs to learn which resources it may serve"),
    Rule("", "namespaces", ("list", "watch"), "framework", "kopf follows namespaces when it runs cluster-wide"),
    Rule("reranker.dev", "rerankers", ("list", "watch", "patch"), "framework",
         "kopf watches Rerankers and keeps its progress and finalizer on them"),
    Rule("reranker.dev", "rerankerendpoints", ("list", "watch", "patch"), "framework",
         "kopf watches RerankerEndpoints (the probe timer, the cache) and keeps its finalizer on them"),
    Rule("", "events", ("create",), "framework", "kopf and the reconciler post Events"),
    Rule("reranker.dev", "rerankers/status", ("patch",), "application", "conditions, replicas, URL, endpoints"),
    Rule("reranker.dev", "rerankerendpoints/status", ("patch",), "application", "probe results, Ready"),
    Rule("coordination.k8s.io", "leases", ("get",), "application", "a self-registered server's heartbeat"),
    Rule("apps", "deployments", _CHILD, "application", "the server Deployment"),
    Rule("", "services", _CHILD, "application", "the Reranker's Service and <name>-external"),
    Rule("autoscaling", "horizontalpodautoscalers", _CHILD, "application", "the autoscaler"),
    Rule("policy", "poddisruptionbudgets", _CHILD, "application", "the PDB when min >= 2"),
    Rule("networking.k8s.io", "networkpolicies", _CHILD, "application", "spec.networkPolicy's policy"),
    Rule("discovery.k8s.io", "endpointslices", _CHILD, "application",
         "external endpoints listed in the Reranker's Services"),
    Rule("", "configmaps", _CHILD, "application", "<name>-fleet: the fleet's size, for the servers' rate-limit shares"),
    Rule("", "persistentvolumeclaims", _CHILD, "application", "spec.model.cache's claim"),
    Rule("batch", "jobs", _CHILD, "application", "the Job that loads the model into the cache"),
    Rule("", "pods", ("list", "watch"), "application",
         "the server pods the operator autoscaler reads /metrics from; the model loader's pod"),
    Rule("", "pods/log", ("get",), "application", "reads the loader's progress"),
    Rule("apps", "deployments/scale", ("patch",), "application", "the operator autoscaling engine sets replicas"),
    Rule("keda.sh", "scaledobjects", _CHILD, "application", "the keda autoscaling engine's ScaledObject"),
    Rule("storage.k8s.io", "storageclasses", ("list",), "application",
         "a model cache's access mode follows its class's provisioner"),
)  # fmt: skip


def merged() -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, all purposes together."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in RULES:
        out.setdefault((rule.api_group, rule.resource), set()).update(rule.verbs)
    return out
