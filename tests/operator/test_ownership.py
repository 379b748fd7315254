"""What a Reranker owns (pure): the desired children with external endpoints, drift detection
that ignores what the API server adds, and pruning only what is ours."""

from __future__ import annotations

import copy
from typing import Any

from reranker_operator import ownership
from reranker_operator.builders.children import ChildKey
from reranker_operator.builders.common import Owner
from reranker_operator.models import RerankerSpec
from tests.operator.manifests import desired_children

OWNER = Owner(name="fleet", namespace="search", uid="u-1")
SPEC = RerankerSpec.model_validate({"model": {"name": "m"}, "replicas": {"min": 2, "max": 4}})


def endpoint(name: str, address: str, ready: bool | None, reason: str = "Healthy") -> dict[str, Any]:
    status = {} if ready is None else {"conditions": [{"type": "Ready", "status": str(ready), "reason": reason}]}
    return {
        "metadata": {"name": name},
        "spec": {"rerankerRef": {"name": "fleet"}, "address": address},
        "status": status,
    }


def desired(registered: list[dict[str, Any]] | None = None) -> dict[ChildKey, dict[str, Any]]:
    return desired_children(OWNER, SPEC, registered=registered or [])


def test_without_endpoints_three_children() -> None:
    """The operator autoscaling engine (the default) needs no HPA."""
    assert set(desired()) == {("Deployment", "fleet"), ("Service", "fleet"), ("PodDisruptionBudget", "fleet")}
    for manifest in desired().values():
        assert ownership.controller_name(manifest) == "fleet"
        assert manifest["metadata"]["labels"].items() >= ownership.MANAGED_LABELS.items()


def test_endpoints_bring_the_external_service_and_slices_for_both_services() -> None:
    registered = [
        endpoint("mini-1", "10.0.0.5", True),
        endpoint("mini-2", "10.0.0.6", False, "ProbeFailed"),
        endpoint("mini-3", "10.0.0.7", None),  # not probed yet: not listed
        endpoint("mini-4", "10.0.0.8", False, "ModelMismatch"),  # refused: not listed
    ]
    children = desired(registered)
    assert ("Service", "fleet-external") in children
    slices = [m for (kind, _), m in children.items() if kind == "EndpointSlice"]
    assert {s["metadata"]["labels"]["kubernetes.io/service-name"] for s in slices} == {"fleet", "fleet-external"}
    for item in slices:
        listed = {e["addresses"][0]: e["conditions"]["ready"] for e in item["endpoints"]}
        assert listed == {"10.0.0.5": True, "10.0.0.6": False}
    assert ownership.endpoint_counts(registered) == {"ready": 1, "total": 4}
    # registered but none listable: the external Service stays, with no slices
    assert ("Service", "fleet-external") in desired([endpoint("mini-3", "10.0.0.7", None)])


def as_the_api_server_returns_it(manifest: dict[str, Any]) -> dict[str, Any]:
    """Defaults and bookkeeping a real API server adds to what it was sent."""
    live = copy.deepcopy(manifest)
    live["metadata"] |= {"uid": "x", "resourceVersion": "7", "generation": 2, "managedFields": [{}]}
    live["status"] = {"replicas": 2}
    if manifest["kind"] == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod |= {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
        container = pod["containers"][0]
        container |= {"terminationMessagePath": "/dev/termination-log"}
        container["resources"]["limits"]["cpu"] = "4000m"  # another spelling of "4"
        live["spec"] |= {"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
    if manifest["kind"] == "Service":
        live["spec"] |= {"clusterIP": "10.96.0.7", "sessionAffinity": "None"}
    return live


def test_in_sync_children_need_no_request() -> None:
    want = desired()
    live = {key: as_the_api_server_returns_it(m) for key, m in want.items()}
    todo = ownership.plan(want, live, OWNER.uid)
    assert todo.apply == [] and todo.delete == []


def test_missing_or_edited_children_are_applied() -> None:
    want = desired()
    live = {key: as_the_api_server_returns_it(m) for key, m in want.items()}
    del live["Service", "fleet"]
    live["PodDisruptionBudget", "fleet"]["spec"]["maxUnavailable"] = 2
    live["Deployment", "fleet"]["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    applied = {(m["kind"], m["metadata"]["name"]) for m in ownership.plan(want, live, OWNER.uid).apply}
    assert applied == {("Service", "fleet"), ("PodDisruptionBudget", "fleet"), ("Deployment", "fleet")}


def test_only_our_unwanted_children_are_pruned() -> None:
    want = desired()
    live = {key: as_the_api_server_returns_it(m) for key, m in want.items()}
    stale = as_the_api_server_returns_it(desired([endpoint("mini-1", "10.0.0.5", True)])["Service", "fleet-external"])
    live["Service", "fleet-external"] = stale
    foreign = copy.deepcopy(stale)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    live["EndpointSlice", "not-ours"] = foreign
    assert ownership.plan(want, live, OWNER.uid).delete == [("Service", "fleet-external")]


def test_an_endpoint_joins_only_a_fleet_of_its_scheme() -> None:
    https_mini = endpoint("mini-1", "10.0.0.5", True) | {
        "spec": {"rerankerRef": {"name": "fleet"}, "address": "10.0.0.5", "scheme": "https"}
    }
    plain = [m for (kind, _), m in desired([https_mini]).items() if kind == "EndpointSlice"]
    assert plain == []  # an http fleet's clients would speak http to it
    tls_spec = RerankerSpec.model_validate({"model": {"name": "m"}, "tls": {"secretName": "t"}})
    tls = desired_children(OWNER, tls_spec, registered=[https_mini])
    assert [kind for kind, _ in tls].count("EndpointSlice") == 2


def test_contains() -> None:
    assert ownership.contains({"a": 1, "b": 2}, {"a": 1})
    assert not ownership.contains({"a": 1}, {"a": 2})
    assert ownership.contains({}, {"value": ""})  # omitted empty value
    assert not ownership.contains([1, 2], [1])
    assert ownership.contains({"memory": "1024Mi"}, {"memory": "1Gi"})
    assert not ownership.contains({"ready": 1}, {"ready": True})
    assert not ownership.contains({"port": "http"}, {"port": "8000"})
