"""The autoscaling engines end to end: the real operator against the emulated API server (the
chart's RBAC enforced), real server processes as the pods (real ``/metrics``, real load)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import Cluster
from tests.operator.fleet_pods import PodController, load
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.helm]

SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
DOWN_WINDOW = 6  # seconds: the scale-down stabilization these tests give the Reranker
FAST = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]},
    "scaleDown": {"stabilizationWindowSeconds": DOWN_WINDOW,
                  "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]},
}  # fmt: skip


def operator_engine(model: str, **extra: Any) -> dict[str, Any]:
    scaling = {"engine": "operator", "targetInProgressRequests": 3, "windowSeconds": 2, "behavior": FAST}
    return {"model": {"name": model}, "replicas": {"min": 1, "max": 3}, "autoscaling": scaling} | extra


def autoscaling(cluster: Cluster, name: str) -> dict[str, Any]:
    return ((cluster.reranker(name) or {}).get("status") or {}).get("autoscaling") or {}


def scaling_events(cluster: Cluster, name: str) -> list[str]:
    events = cluster.api.live("v1/events", "search").values()
    return [e["message"] for e in events if e["reason"] == "Scaling" and e["involvedObject"]["name"] == name]


async def test_load_scales_up_and_scales_down_only_after_the_window(
    cluster: Cluster, start_server: Any, minilm_cross_dir: Path, xlmr_cross_dir: Path
) -> None:
    busy = start_server({"MODEL_NAME": str(minilm_cross_dir), "MAX_PARALLEL_REQUESTS": "4"})
    idle = [start_server({"MODEL_NAME": str(xlmr_cross_dir)}) for _ in range(2)]
    backends = [("127.0.0.1", s.port) for s in (busy, *idle)]
    await cluster.apply("fleet", operator_engine(str(minilm_cross_dir)))
    async with PodController(cluster, "fleet", backends).running() as pods:
        await cluster.eventually(lambda: pods.pods == 1)
        await asyncio.sleep(3)
        assert pods.replicas() == 1  # idle: min
        assert cluster.api.live(HPAS, "search") == {}  # no HPA under this engine

        async with load(busy.url, concurrency=8):  # ~8 in progress + queued, 3 per replica: 3 replicas
            await cluster.eventually(lambda: pods.replicas() == 3, within=30)
            # the status and the Event follow the scale right after it
            status = await cluster.eventually(
                lambda: (s := autoscaling(cluster, "fleet")).get("lastScale", {}).get("to") == 3 and s
            )
            await cluster.eventually(lambda: any(m.startswith("scaled from") for m in scaling_events(cluster, "fleet")))
        stopped = time.monotonic()
        assert status["engine"] == "operator" and float(status["load"]) > 3
        assert status["lastScale"]["to"] > status["lastScale"]["from"]

        await cluster.eventually(lambda: pods.replicas() == 1, within=30)
        waited = time.monotonic() - stopped
        print(f"scaled down {waited:.1f}s after the load stopped (window {DOWN_WINDOW}s); replicas {pods.history}")
        assert waited >= DOWN_WINDOW - 1  # the 2 s load average ramps down within the window


async def test_a_pod_whose_metrics_fail_blocks_scale_down(
    cluster: Cluster, start_server: Any, minilm_cross_dir: Path, xlmr_cross_dir: Path
) -> None:
    busy = start_server({"MODEL_NAME": str(minilm_cross_dir), "MAX_PARALLEL_REQUESTS": "4"})
    dead_port = free_port()  # a pod that reports Ready but whose /metrics can't be read
    backends = [("127.0.0.1", busy.port), ("127.0.0.1", dead_port), ("127.0.0.1", dead_port)]
    await cluster.apply("fleet", operator_engine(str(minilm_cross_dir)))
    async with PodController(cluster, "fleet", backends).running() as pods:
        async with load(busy.url, concurrency=8):
            await cluster.eventually(lambda: pods.replicas() >= 2, within=30)
        high = pods.replicas()
        await asyncio.sleep(DOWN_WINDOW + 4)
        assert pods.replicas() == high, pods.history  # load gone, but one pod's load is unknown


async def test_hpa_engine_scales_on_cpu_without_a_custom_metrics_api(cluster: Cluster) -> None:
    await cluster.apply("plain", {"model": {"name": "m"}, "autoscaling": {"engine": "hpa"}})
    hpa = await cluster.eventually(lambda: cluster.api.live(HPAS, "search").get("plain"))
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    cluster.api.custom_metrics = ["pods/reranker_requests_in_progress"]
    await cluster.eventually(
        lambda: "Pods" in [m["type"] for m in cluster.api.live(HPAS, "search")["plain"]["spec"]["metrics"]], within=10
    )
    assert autoscaling(cluster, "plain")["engine"] == "hpa"


async def test_keda_engine_with_and_without_keda(cluster: Cluster) -> None:
    spec = {"model": {"name": "m"}, "autoscaling": {"engine": "keda", "keda": {"serverAddress": "http://prom:9090"}}}
    await cluster.apply("event-driven", spec)
    degraded = await cluster.eventually(
        lambda: (c := cluster.condition("event-driven", "Degraded")) and c.get("status") == "True" and c
    )
    assert degraded["reason"] == "AutoscalerUnavailable" and "keda needs KEDA" in degraded["message"]
    assert cluster.api.live(SCALED_OBJECTS, "search") == {}
    assert cluster.api.live("apps/v1/deployments", "search").get("event-driven")  # it still serves

    # KEDA installed: its CRD appears (kopf starts watching ScaledObjects), its API is served,
    # and the next drift check creates the ScaledObject
    cluster.api.keda = True
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "scaledobjects.keda.sh"},
           "spec": {"group": "keda.sh", "scope": "Namespaced",
                    "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject"},
                    "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}}  # fmt: skip
    response = await cluster.client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert response.status_code < 300, response.text
    scaled = await cluster.eventually(lambda: cluster.api.live(SCALED_OBJECTS, "search").get("event-driven"), within=10)
    assert scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom:9090"
    await cluster.eventually(lambda: cluster.condition("event-driven", "Degraded").get("status") == "False")
    assert autoscaling(cluster, "event-driven")["metrics"] == ["reranker_requests_in_progress", "reranker_queue_depth"]
    assert cluster.api.live(HPAS, "search") == {}

    # another engine: the ScaledObject goes
    await cluster.apply("event-driven", {"model": {"name": "m"}, "autoscaling": {"engine": "operator"}})
    await cluster.eventually(lambda: cluster.api.live(SCALED_OBJECTS, "search") == {})
