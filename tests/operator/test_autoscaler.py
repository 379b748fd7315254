"""The autoscaling engines as pure logic: the operator engine's decision (windows, stabilization,
rate limits, external endpoints, unreadable pods), the load parser, and the keda/hpa builders."""

from __future__ import annotations

from typing import Any

import pytest

from reranker_operator import cluster, profiles
from reranker_operator.autoscale import fleet_load
from reranker_operator.autoscale.decision import Bounds, Sample, Scaler
from reranker_operator.builders import common, scaling
from reranker_operator.models import RerankerSpec
from tests.operator.manifests import desired_children

OWNER = common.Owner(name="search", namespace="rag", uid="u1")
# the cpu profile's behavior: up 100% per 30 s at once; down 50% per minute after 5 minutes
CPU = profiles.PROFILES["cpu"]
BOUNDS = Bounds(1, 10, target_per_replica=8, window_seconds=30, behavior=CPU.scale_behavior)


def run(scaler: Scaler, start: float, seconds: float, current: int, load: float, every: float = 5.0,
        complete: bool = True, external: int = 0) -> tuple[int, float]:  # fmt: skip
    """Feed a steady load; apply each decision as the Deployment would. Returns (replicas, time)."""
    now = start
    while now < start + seconds:
        decision = scaler.decide(now, current, Sample(load, complete, external), BOUNDS)
        current = decision.replicas
        now += every
    return current, now


def test_load_up_scales_up_within_the_window() -> None:
    scaler = Scaler()
    current, now = run(scaler, 0, 60, 1, load=0)
    assert current == 1
    # 30 requests in flight need 4 replicas at 8 each: the first step within the 30 s average's
    # window, the rest one rate-limit period (+100% per 30 s) later
    current, now = run(scaler, now, 15, current, load=30)
    assert current == 2
    current, now = run(scaler, now, 40, current, load=30)
    assert current == 4
    assert "load" in (scaler.last.reason if scaler.last else "")


def test_scale_up_is_rate_limited_by_the_behavior() -> None:
    scaler = Scaler()
    run(scaler, 0, 30, 1, load=0)
    decision = scaler.decide(30, 1, Sample(200, True, 0), Bounds(1, 50, 8, 1, CPU.scale_behavior))
    assert decision.replicas == 2 and "rate-limited" in decision.reason  # +100% per 30 s: 1 -> 2


def test_load_gone_scales_down_only_after_the_stabilization_window() -> None:
    scaler = Scaler()
    current, now = run(scaler, 0, 65, 1, load=40)
    assert current == 5  # 1 -> 2 -> 4 -> 5, +100% per 30 s
    current, now = run(scaler, now, 290, current, load=0)  # quiet, but within the 300 s window
    assert current == 5
    current, now = run(scaler, now, 120, current, load=0)
    assert current < 5  # then down, 50% per minute
    current, now = run(scaler, now, 300, current, load=0)
    assert current == 1


def test_an_unreadable_pod_blocks_scale_down_but_not_scale_up() -> None:
    scaler = Scaler()
    current, now = run(scaler, 0, 65, 1, load=40)
    current, now = run(scaler, now, 600, current, load=0, complete=False)
    assert current == 5
    assert scaler.last is not None and "not scaling down" in scaler.last.reason
    current, _ = run(scaler, now, 60, current, load=70, complete=False)
    assert current == 9


def test_ready_external_endpoints_count_as_replicas() -> None:
    scaler = Scaler()
    current, now = run(scaler, 0, 65, 1, load=40, external=0)
    assert current == 5
    # two Macs come into rotation: the fleet needs 5, the Deployment 3 (after the down window)
    current, now = run(scaler, now, 420, current, load=40, external=2)
    assert current == 3
    # they leave: the pods take their share at once
    current, _ = run(scaler, now, 35, current, load=40, external=0)
    assert current == 5


def test_min_and_max_bound_the_pods() -> None:
    scaler = Scaler()
    assert scaler.decide(0, 1, Sample(10_000, True, 0), Bounds(2, 3, 8, 30, {})).replicas == 2  # below min: to min
    current, _ = run(scaler, 0, 120, 2, load=10_000)
    assert current == 10  # BOUNDS.max
    assert Scaler().decide(0, 4, Sample(100, True, 10), Bounds(2, 6, 8, 30, {})).replicas <= 4


def test_no_sample_no_change() -> None:
    decision = Scaler().decide(0, 3, None, BOUNDS)
    assert (decision.replicas, decision.reason) == (3, "no load sample yet")


def test_metrics_text_load() -> None:
    text = """# HELP reranker_requests_in_progress Rerank requests admitted and being scored.
# TYPE reranker_requests_in_progress gauge
reranker_requests_in_progress 3.0
# TYPE reranker_queue_depth gauge
reranker_queue_depth{model="m"} 2.0
reranker_pending_sequences 90.0
reranker_requests_total{route="/v1/rerank",status="200"} 7.0
"""
    assert fleet_load.parse_load(text) == 5.0


def test_only_ready_pods_and_endpoints_in_rotation_are_scraped() -> None:
    ready, unready = {"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}
    pods = [
        {"metadata": {}, "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8123}]}]},
         "status": {"podIP": "10.0.0.1", "conditions": [ready]}},
        {"metadata": {}, "spec": {}, "status": {"podIP": "10.0.0.2", "conditions": [unready]}},
        {"metadata": {"deletionTimestamp": "x"}, "spec": {}, "status": {"podIP": "10.0.0.3", "conditions": [ready]}},
    ]  # fmt: skip
    assert [t.url for t in fleet_load.pod_targets(pods, "http")] == ["http://10.0.0.1:8123/metrics"]

    def endpoint(address: str, ready: str) -> dict[str, Any]:
        return {"spec": {"rerankerRef": {"name": "search"}, "address": address, "port": 8000},
                "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "ProbeSucceeded"}]}}  # fmt: skip

    targets = fleet_load.endpoint_targets([endpoint("192.168.1.20", "True"), endpoint("192.168.1.21", "False")])
    assert [t.url for t in targets] == ["http://192.168.1.20:8000/metrics"]


def spec(**autoscaling: Any) -> RerankerSpec:
    return RerankerSpec.model_validate({"model": {"name": "m"}, "autoscaling": autoscaling})


def kinds(s: RerankerSpec, facts: cluster.ClusterFacts) -> dict[str, Any]:
    built = desired_children(OWNER, s, cluster=facts)
    return {kind: m for (kind, _), m in built.items()}


def test_the_operator_engine_is_the_default_and_needs_no_hpa() -> None:
    built = kinds(spec(), cluster.ClusterFacts())
    assert "HorizontalPodAutoscaler" not in built and "ScaledObject" not in built
    assert "replicas" not in built["Deployment"]["spec"]  # the engine sets them through the scale subresource
    assert cluster.autoscaler_problem(spec(), cluster.ClusterFacts()) is None


KEDA = cluster.ClusterFacts(keda=True, keda_prometheus="http://prometheus.monitoring:9090")


def test_keda_engine_builds_a_scaled_object_on_the_same_load() -> None:
    built = kinds(spec(engine="keda"), KEDA)
    scaled = built["ScaledObject"]
    assert "HorizontalPodAutoscaler" not in built
    assert scaled["spec"]["scaleTargetRef"]["name"] == "search"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 3)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
    assert trigger["metadata"]["threshold"] == str(CPU.target_in_progress_requests)
    query = trigger["metadata"]["query"]
    assert "reranker_requests_in_progress|reranker_queue_depth" in query and 'namespace="rag"' in query
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == CPU.scale_behavior
    own = kinds(spec(engine="keda", keda={"serverAddress": "http://prom:9090"}), KEDA)["ScaledObject"]
    assert own["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom:9090"


@pytest.mark.parametrize(
    ("facts", "problem"),
    [
        (cluster.ClusterFacts(), "spec.autoscaling.engine: keda needs KEDA"),
        (cluster.ClusterFacts(keda=True), "spec.autoscaling.keda.serverAddress: not set"),
    ],
)
def test_keda_engine_without_keda_says_what_is_missing(facts: cluster.ClusterFacts, problem: str) -> None:
    assert problem in (cluster.autoscaler_problem(spec(engine="keda"), facts) or "")
    assert "ScaledObject" not in kinds(spec(engine="keda"), facts)


def test_promql_selects_only_this_rerankers_pods() -> None:
    import re

    pods = re.search(r'pod=~"([^"]+)"', scaling.load_query(OWNER))
    assert pods is not None
    pattern = re.compile(pods.group(1))
    assert pattern.fullmatch("search-7d9f8c6b5-abcde")
    assert not pattern.fullmatch("search-v2-7d9f8c6b5-abcde")
