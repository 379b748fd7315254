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


RULES: tuple[Rule, ...] = (
    Rule("reranker.dev", "rerankers", ("list", "watch", "patch"), "framework",
         "kopf watches Rerankers and keeps its progress in their annotations"),
    Rule("", "events", ("create",), "framework", "kopf and the reconciler post Events"),
    Rule("reranker.dev", "rerankers", ("get",), "application", "re-read a Reranker when a child changes"),
    Rule("reranker.dev", "rerankers/status", ("patch",), "application", "conditions, replicas, URL"),
    Rule("reranker.dev", "rerankerendpoints", ("list", "watch", "patch"), "framework",
         "kopf watches RerankerEndpoints (probe timer) and keeps its progress in their annotations"),
    Rule("reranker.dev", "rerankerendpoints", ("get",), "application", "external endpoints of a Reranker"),
    Rule("reranker.dev", "rerankerendpoints/status", ("patch",), "application", "probe results, Ready"),
    Rule("coordination.k8s.io", "leases", ("get",), "application", "a self-registered server's heartbeat"),
    Rule("discovery.k8s.io", "endpointslices", ("get", "list", "patch", "delete"), "application",
         "external endpoints listed in the Reranker's Services"),
    Rule("apps", "deployments", ("get", "list", "watch", "patch", "delete"), "application",
         "the server Deployment; watched so a deleted or edited one is put back"),
    Rule("", "services", ("get", "patch", "delete"), "application", "the Reranker's Service and <name>-external"),
    Rule("autoscaling", "horizontalpodautoscalers", ("get", "patch", "delete"), "application", "the autoscaler"),
    Rule("policy", "poddisruptionbudgets", ("get", "patch", "delete"), "application", "the PDB when min >= 2"),
)  # fmt: skip


def merged() -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, all purposes together."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in RULES:
        out.setdefault((rule.api_group, rule.resource), set()).update(rule.verbs)
    return out
