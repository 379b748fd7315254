"""The real operator process (``reranker-operator``) against an emulated API server."""

from __future__ import annotations

import asyncio

import pytest

from tests.operator.conftest import DEPLOYMENTS, HPAS, PDBS, RERANKERS, SERVICES, Cluster
from tests.operator.manifests import validate_builtin

pytestmark = [pytest.mark.slow, pytest.mark.helm]  # helm renders the chart's RBAC the emulator enforces


async def test_create_update_drift_and_delete(cluster: Cluster) -> None:
    await cluster.apply(
        "minilm",
        {"model": {"name": "cross-encoder/ms-marco-MiniLM-L-6-v2"}, "replicas": {"min": 1, "max": 3},
         "autoscaling": {"engine": "hpa"}},
    )  # fmt: skip
    children = await cluster.eventually(lambda: (c := cluster.children("minilm"))[DEPLOYMENTS] and c[HPAS] and c)
    assert children[PDBS] is None  # one replica: no PDB
    for child in filter(None, children.values()):
        validate_builtin({k: v for k, v in child.items() if k != "status"})
    status = await cluster.eventually(lambda: (cluster.reranker("minilm") or {}).get("status", {}).get("url"))
    assert status == "http://minilm.search.svc:8000"
    ready = cluster.condition("minilm", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForReplicas")

    # the Deployment reports ready pods (the deployment controller would): Ready turns True
    response = await cluster.client.patch(
        "/apis/apps/v1/namespaces/search/deployments/minilm/status",
        json={"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    await cluster.eventually(lambda: cluster.condition("minilm", "Ready").get("status") == "True")

    # spec change: children change
    await cluster.apply("minilm", {"model": {"name": "BAAI/bge-reranker-base"}, "replicas": {"min": 2, "max": 5},
                                   "server": {"batchSize": 8}, "autoscaling": {"engine": "hpa"}})  # fmt: skip

    def updated() -> bool:
        c = cluster.children("minilm")
        env = {e["name"]: e.get("value") for e in c[DEPLOYMENTS]["spec"]["template"]["spec"]["containers"][0]["env"]}
        return bool(env["MODEL_NAME"] == "BAAI/bge-reranker-base" and env["BATCH_SIZE"] == "8"
                    and c[HPAS]["spec"]["maxReplicas"] == 5 and c[PDBS] is not None)  # fmt: skip

    await cluster.eventually(updated)
    assert cluster.reranker("minilm")["metadata"]["generation"] == 2
    await cluster.eventually(lambda: cluster.reranker("minilm")["status"]["observedGeneration"] == 2)

    # a child deleted by hand is put back; a hand edit is reverted
    for kind, path in ((DEPLOYMENTS, "/apis/apps/v1"), (SERVICES, "/api/v1")):
        old_uid = cluster.children("minilm")[kind]["metadata"]["uid"]
        response = await cluster.client.delete(f"{path}/namespaces/search/{kind.split('/')[-1]}/minilm")
        assert response.status_code == 200
        await cluster.eventually(
            lambda k=kind, u=old_uid: (c := cluster.children("minilm")[k]) and c["metadata"]["uid"] != u
        )
    await cluster.client.patch(
        "/apis/autoscaling/v2/namespaces/search/horizontalpodautoscalers/minilm",
        json={"spec": {"maxReplicas": 99}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    await cluster.eventually(lambda: cluster.children("minilm")[HPAS]["spec"]["maxReplicas"] == 5)

    # deleting the Reranker leaves nothing behind
    response = await cluster.client.delete(f"{RERANKERS}/minilm")
    assert response.status_code == 200
    await cluster.eventually(lambda: cluster.reranker("minilm") is None)
    await cluster.eventually(lambda: not any(cluster.children("minilm").values()))


async def test_bad_spec_gets_a_condition_and_an_event_not_a_crash(cluster: Cluster) -> None:
    await cluster.apply("broken", {"model": {"name": "m"}, "replicas": {"min": 4, "max": 2}})
    degraded = await cluster.eventually(lambda: (c := cluster.condition("broken", "Degraded")) and c)
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "replicas.min (4) must not exceed replicas.max (2)" in degraded["message"]
    assert cluster.condition("broken", "Ready")["status"] == "False"
    assert cluster.children("broken")[DEPLOYMENTS] is None
    events = await cluster.eventually(
        lambda: [e for e in cluster.api.live("v1/events", "search").values() if e["involvedObject"]["name"] == "broken"]
    )
    assert events[0]["reason"] == "InvalidSpec" and events[0]["type"] == "Warning"
    await asyncio.sleep(2.5)  # two drift checks later: still one event, operator still alive
    assert (
        len([e for e in cluster.api.live("v1/events", "search").values() if e["involvedObject"]["name"] == "broken"])
        == 1
    )

    # fixing the spec recovers
    await cluster.apply("broken", {"model": {"name": "m"}, "replicas": {"min": 1, "max": 2}})
    await cluster.eventually(lambda: cluster.children("broken")[DEPLOYMENTS] is not None)
    await cluster.eventually(lambda: cluster.condition("broken", "Degraded").get("status") == "False")


async def test_hpa_scales_on_request_metrics_only_once_the_cluster_serves_them(cluster: Cluster) -> None:
    """Without a custom-metrics adapter (most clusters) the HPA scales on CPU; when one appears,
    the next drift check adds the request metrics."""

    def hpa_metrics() -> set[str] | None:
        hpa = cluster.children("adaptive")[HPAS]
        if hpa is None:
            return None
        return {m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"]
                for m in hpa["spec"]["metrics"]}  # fmt: skip

    await cluster.apply("adaptive", {"model": {"name": "m"}, "autoscaling": {"engine": "hpa"}})
    assert await cluster.eventually(hpa_metrics) == {"cpu"}
    status = await cluster.eventually(lambda: (cluster.reranker("adaptive") or {}).get("status", {}).get("autoscaling"))
    assert status == {"enabled": True, "engine": "hpa", "metrics": ["cpu"]}

    cluster.api.custom_metrics = ["pods/reranker_requests_in_progress", "pods/reranker_queue_depth"]
    await cluster.eventually(lambda: hpa_metrics() == {"cpu", "reranker_requests_in_progress"}, within=10)
    await cluster.eventually(
        lambda: cluster.reranker("adaptive")["status"]["autoscaling"]["metrics"] == [
            "reranker_requests_in_progress", "cpu"]
    )  # fmt: skip
