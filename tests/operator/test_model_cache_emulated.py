"""spec.model.cache end to end: the real operator against the emulated API server (the chart's RBAC
enforced), with the test playing the Job controller and the loader pod's log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.operator.conftest import DEPLOYMENTS, Cluster
from tests.operator.manifests import validate_builtin

pytestmark = [pytest.mark.slow, pytest.mark.helm]

CLAIMS, JOBS, PODS = "v1/persistentvolumeclaims", "batch/v1/jobs", "v1/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}


def cached_spec(model: str) -> dict[str, Any]:
    return {"model": {"name": model, "cache": {"pvc": {"size": "20Gi"}}}}


def only(cluster: Cluster, resource: str) -> dict[str, Any] | None:
    found = list(cluster.api.live(resource, "search").values())
    return found[0] if len(found) == 1 else None


def model_cache(cluster: Cluster, name: str) -> dict[str, Any]:
    return ((cluster.reranker(name) or {}).get("status") or {}).get("modelCache") or {}


async def loader_pod(cluster: Cluster, job: str, log: str) -> None:
    """What the Job controller and the kubelet would do: a pod for the Job, printing progress."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{job}-x1", "labels": {"batch.kubernetes.io/job-name": job}},
           "spec": {"containers": [{"name": "loader", "image": "img"}]}}  # fmt: skip
    response = await cluster.client.post("/api/v1/namespaces/search/pods", json=pod)
    assert response.status_code < 300, response.text
    cluster.api.pod_logs["search", f"{job}-x1"] = log


async def test_the_model_is_loaded_once_into_a_claim_and_reloaded_when_it_changes(cluster: Cluster) -> None:
    await cluster.apply("cached", cached_spec("BAAI/bge-reranker-v2-m3"))
    claim = await cluster.eventually(lambda: only(cluster, CLAIMS))
    job = await cluster.eventually(lambda: only(cluster, JOBS))
    deployment = await cluster.eventually(lambda: cluster.api.live(DEPLOYMENTS, "search").get("cached"))
    for child in (claim, job, deployment):
        validate_builtin({k: v for k, v in child.items() if k != "status"})
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][-1] == "--wait"
    assert (
        next(v for v in pod["volumes"] if v["name"] == "model-cache")["persistentVolumeClaim"]["claimName"]
        == (claim["metadata"]["name"])
    )
    waiting = await cluster.eventually(lambda: (c := cluster.condition("cached", "ModelCached")) and c)
    assert (waiting["status"], waiting["reason"]) == ("False", "Loading")

    # the loader prints its progress: status.modelCache follows while it runs
    job_name = job["metadata"]["name"]
    await loader_pod(cluster, job_name, '{"downloadedBytes": 1100000000, "totalBytes": 2200000000}\n')
    progress = await cluster.eventually(
        lambda: model_cache(cluster, "cached").get("downloadedBytes") and model_cache(cluster, "cached")
    )
    assert progress["totalBytes"] == 2_200_000_000 and progress["summary"] == "50% of 2.2 GB"
    assert progress["claim"] == claim["metadata"]["name"] and progress["phase"] == "Loading"

    # the Job completes: ModelCached turns True, and nothing is applied again
    response = await cluster.client.patch(
        f"/apis/batch/v1/namespaces/search/jobs/{job_name}/status", json={"status": {"succeeded": 1}}, headers=MERGE
    )
    assert response.status_code == 200, response.text
    await cluster.eventually(lambda: cluster.condition("cached", "ModelCached").get("status") == "True")
    assert model_cache(cluster, "cached")["summary"] == "Cached"

    # another model: a new claim and a new load; the old claim and Job go, the pods follow the new claim
    await cluster.apply("cached", cached_spec("BAAI/bge-reranker-base"))
    new_claim = await cluster.eventually(
        lambda: (c := only(cluster, CLAIMS)) and c["metadata"]["name"] != claim["metadata"]["name"] and c
    )
    await cluster.eventually(lambda: (j := only(cluster, JOBS)) and j["metadata"]["name"] != job_name)
    await cluster.eventually(lambda: cluster.condition("cached", "ModelCached").get("reason") == "Loading")

    def pods_use_new_claim() -> bool:
        volumes = cluster.api.live(DEPLOYMENTS, "search")["cached"]["spec"]["template"]["spec"]["volumes"]
        claim_names = [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v]
        return claim_names == [new_claim["metadata"]["name"]]

    await cluster.eventually(pods_use_new_claim)


async def test_a_failed_load_is_a_condition_and_an_event(cluster: Cluster) -> None:
    await cluster.apply("gated", cached_spec("meta/gated-reranker"))
    job = await cluster.eventually(lambda: only(cluster, JOBS))
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit"}]}  # fmt: skip
    response = await cluster.client.patch(
        f"/apis/batch/v1/namespaces/search/jobs/{job['metadata']['name']}/status",
        json={"status": failed},
        headers=MERGE,
    )
    assert response.status_code == 200, response.text
    degraded = await cluster.eventually(
        lambda: (c := cluster.condition("gated", "Degraded")) and c["status"] == "True" and c
    )
    assert degraded["reason"] == "ModelLoadFailed" and "backoff limit" in degraded["message"]
    events = await cluster.eventually(
        lambda: [e for e in cluster.api.live("v1/events", "search").values() if e["reason"] == "ModelLoadFailed"]
    )
    assert events[0]["involvedObject"]["name"] == "gated"
    assert model_cache(cluster, "gated")["phase"] == "Failed"


async def test_the_access_mode_follows_the_clusters_default_storage_class(cluster: Cluster) -> None:
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    efs = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "efs.csi.aws.com",
           "metadata": {"name": "efs", "annotations": default}}  # fmt: skip
    response = await cluster.client.post("/apis/storage.k8s.io/v1/storageclasses", json=efs)
    assert response.status_code < 300, response.text
    await asyncio.sleep(1.2)  # the operator looks the classes up once per drift interval (1 s here)
    await cluster.apply("shared", cached_spec("m"))
    claim = await cluster.eventually(lambda: only(cluster, CLAIMS))
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
    await cluster.eventually(lambda: model_cache(cluster, "shared").get("accessMode") == "ReadOnlyMany")
