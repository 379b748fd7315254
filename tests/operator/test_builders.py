"""Pure builders: profiles, manifests, conditions, with every manifest checked against the
real Kubernetes schemas."""

from __future__ import annotations

from typing import Any

import pytest

from reranker_operator import cluster, conditions, profiles, validation
from reranker_operator.builders import common, network
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import HardwareProfile
from tests.operator.manifests import desired_children, validate_builtin

OWNER = common.Owner(name="search", namespace="rag", uid="1234-5678")


def spec(**fields: Any) -> RerankerSpec:
    """A spec on the hpa engine (its HPA is what these tests check; test_autoscaler covers the others)."""
    fields["autoscaling"] = {"engine": "hpa"} | fields.get("autoscaling", {})
    return RerankerSpec.model_validate({"model": {"name": "BAAI/bge-reranker-base"}} | fields)


# a cluster whose custom-metrics API (prometheus-adapter) serves both request metrics
ADAPTER = frozenset({"reranker_requests_in_progress", "reranker_queue_depth"})


def children(
    s: RerankerSpec,
    profile: HardwareProfile | None = None,
    image: str = "img",
    redis: str | None = None,
    served: frozenset[str] = ADAPTER,
) -> dict[str, Any]:
    """The desired children named like the Reranker, by kind (None: must not exist)."""
    desired = desired_children(
        OWNER,
        s,
        profile=profile or profiles.resolve(s),
        image=image,
        default_redis_url=redis,
        cluster=cluster.ClusterFacts(served),
    )
    kinds = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    return {kind: desired.get((kind, OWNER.name)) for kind in kinds}


def build(**fields: Any) -> dict[str, Any]:
    return children(spec(**fields), image="ghcr.io/acme/reranker-server:1.0")


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"hardwareClass": "nvidia-gpu", "replicas": {"min": 2, "max": 8}},
        {"autoscaling": {"enabled": False}, "replicas": {"min": 3, "max": 3},
         "service": {"type": "LoadBalancer", "port": 80}},
        {"nodeSelector": {"pool": "rerank"}, "tolerations": [{"key": "a", "operator": "Exists"}],
         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
         "env": [{"name": "LOG_LEVEL", "value": "debug"},
                 {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]},
    ],
)  # fmt: skip
def test_every_child_is_valid_kubernetes(fields: dict[str, Any]) -> None:
    for manifest in build(**fields).values():
        if manifest is not None:
            validate_builtin(manifest)


def test_children_are_owned_labelled_and_selected_consistently() -> None:
    children = build(replicas={"min": 2, "max": 4})
    for manifest in children.values():
        assert manifest is not None
        ref = manifest["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("Reranker", "1234-5678", True)
        assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "reranker-operator"
    selector = children["Deployment"]["spec"]["selector"]["matchLabels"]
    assert children["Service"]["spec"]["selector"] == selector
    assert children["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    pod_labels = children["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_cpu_profile_deployment() -> None:
    deployment = build()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(deployment)
    assert env["MODEL_NAME"] == "BAAI/bge-reranker-base"
    assert env["TORCH_THREADS"] == env["OMP_NUM_THREADS"] == "4"  # the CPU limit
    assert env["BATCH_SIZE"] == "32" and env["DTYPE"] == "auto"
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # nothing over /models, where an image keeps a baked model: the writable cache lives elsewhere
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/var/cache/reranker", "/tmp"}
    assert not any(m["mountPath"].startswith("/models") for m in container["volumeMounts"])
    assert env["HF_HOME"] == "/var/cache/reranker/hf"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    # preStop drain + server drain + in-flight grace fit inside the termination grace period
    drain = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert drain >= 5
    assert pod["terminationGracePeriodSeconds"] > drain + int(env["SHUTDOWN_DELAY"]) + int(env["SHUTDOWN_GRACE"])
    assert "replicas" not in deployment["spec"]  # the HPA owns it


def test_gpu_profile_requests_a_gpu_tolerates_its_taint_and_scales_on_queue() -> None:
    children = build(hardwareClass="nvidia-gpu")
    container = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in children["Deployment"]["spec"][
        "template"
    ]["spec"]["tolerations"]
    assert env_of(children["Deployment"])["DEVICE_PREFERENCE"] == "cuda"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900  # a GPU model loads slower
    metrics = {m["pods"]["metric"]["name"] for m in children["HorizontalPodAutoscaler"]["spec"]["metrics"]}
    assert metrics == {"reranker_requests_in_progress", "reranker_queue_depth"}
    behavior = children["HorizontalPodAutoscaler"]["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600


def test_cpu_hpa_uses_cpu_and_in_progress_requests() -> None:
    hpa = build(replicas={"min": 1, "max": 5})["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Pods", "Resource"}


def metric_names(hpa: dict[str, Any]) -> set[str]:
    return {
        m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"] for m in hpa["spec"]["metrics"]
    }


@pytest.mark.parametrize(
    ("hardware_class", "served", "expected"),
    [
        ("cpu", frozenset(), {"cpu"}),  # no adapter: an HPA naming unserved metrics would never scale down
        ("cpu", frozenset({"reranker_requests_in_progress"}), {"cpu", "reranker_requests_in_progress"}),
        ("nvidia-gpu", frozenset(), {"cpu"}),  # GPU pods scale on requests; with none served, CPU at 70%
        ("nvidia-gpu", frozenset({"reranker_queue_depth"}), {"reranker_queue_depth"}),
        ("nvidia-gpu", ADAPTER, set(ADAPTER)),
    ],
)
def test_hpa_names_only_metrics_the_cluster_serves(
    hardware_class: str, served: frozenset[str], expected: set[str]
) -> None:
    s = spec(hardwareClass=hardware_class)
    hpa = children(s, served=served)["HorizontalPodAutoscaler"]
    validate_builtin(hpa)
    assert metric_names(hpa) == expected
    if expected == {"cpu"}:
        assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_spec_overrides_the_profile() -> None:
    s = spec(
        server={
            "batchSize": 8,
            "maxBatchTokens": 4096,
            "dtype": "int8",
            "engine": "pytorch",
            "maxParallelRequests": 3,
            "apiProcesses": 3,
        },
        resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1500m", "memory": "2Gi"}},
        autoscaling={"targetInProgressRequests": 2, "targetCPUUtilization": 50},
        env=[{"name": "BATCH_SIZE", "value": "4"}],
    )
    profile = profiles.resolve(s)
    assert (profile.batch_size, profile.max_batch_tokens, profile.dtype, profile.engine) == (8, 4096, "int8", "pytorch")
    assert profile.cpu_threads == 2  # 1500m rounds up
    built = children(s, profile)
    env = env_of(built["Deployment"])
    assert (env["DTYPE"], env["ENGINE"]) == ("int8", "pytorch")
    assert env_of(children(spec())["Deployment"])["ENGINE"] == "auto"
    assert env["BATCH_SIZE"] == "4"  # an explicit env var wins over tuning
    assert env["MAX_PARALLEL_REQUESTS"] == "3"
    assert env["API_PROCESSES"] == "3" and env_of(children(spec())["Deployment"])["API_PROCESSES"] == "1"
    hpa_targets = {
        m["type"]: m.get("pods", m.get("resource"))["target"]
        for m in built["HorizontalPodAutoscaler"]["spec"]["metrics"]
    }
    assert hpa_targets["Pods"]["averageValue"] == "2"
    assert hpa_targets["Resource"]["averageUtilization"] == 50


def test_redis_cache_wiring() -> None:
    s = spec(cache={"redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "ttlSeconds": 600}})
    env = env_of(children(s)["Deployment"])
    assert env["ENABLE_DISTRIBUTED"] == "true"
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert env["REDIS_TTL_SECONDS"] == "600"
    plain = spec(cache={"redis": {"url": "redis://r:6379/0"}})
    assert env_of(children(plain)["Deployment"])["REDIS_URL"] == ("redis://r:6379/0")
    default = spec()
    with_default = children(default, redis="redis://fleet:6379/0")
    assert env_of(with_default["Deployment"])["REDIS_URL"] == "redis://fleet:6379/0"
    assert "ENABLE_DISTRIBUTED" not in env_of(build()["Deployment"])
    _, problems = validation.validate({"model": {"name": "m"}, "cache": {"redis": {}}}, "img")
    assert problems and "exactly one of url and urlSecretRef" in problems[0]
    validate_builtin(children(s)["Deployment"])


def test_pdb_only_from_two_replicas_and_no_hpa_when_disabled() -> None:
    assert build(replicas={"min": 1, "max": 3})["PodDisruptionBudget"] is None
    assert build(replicas={"min": 2, "max": 3})["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    fixed = build(autoscaling={"enabled": False}, replicas={"min": 2, "max": 2})
    assert fixed["HorizontalPodAutoscaler"] is None
    assert fixed["Deployment"]["spec"]["replicas"] == 2


def test_validation_names_each_problem() -> None:
    _, problems = validation.validate({"model": {"name": "m"}, "replicas": {"min": 5, "max": 2}}, "img")
    assert problems == ["spec.replicas: Value error, replicas.min (5) must not exceed replicas.max (2)"]
    _, problems = validation.validate({"model": {"name": "m"}, "env": [{"name": "PORT", "value": "1"}]}, "img")
    assert problems and problems[0].startswith("spec.env: PORT")
    _, problems = validation.validate({"model": {"name": "m"}}, None)
    assert problems[0].startswith("spec.image")
    _, problems = validation.validate(
        {"model": {"name": "m"}, "hardwareClass": "nvidia-gpu", "resources": {"limits": {"cpu": "1"}}}, "img"
    )
    assert "nvidia.com/gpu" in problems[0]
    _, problems = validation.validate({"model": {"name": "m"}, "hardwareClass": "tpu"}, "img")
    assert problems[0].startswith("spec.hardwareClass")
    _, problems = validation.validate({"model": {"name": "m"}, "replicaz": 3}, "img")
    assert problems[0].startswith("spec.replicaz")


def test_conditions_follow_the_deployment() -> None:
    def deployment(ready: int, updated: int, observed: int = 2, generation: int = 2) -> dict[str, Any]:
        return {
            "metadata": {"generation": generation},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": observed},
        }

    def by_type(conds: list[conditions.Condition]) -> dict[str, conditions.Condition]:
        return {c.type: c for c in conds}

    fresh = by_type(
        conditions.compute(generation=1, problems=[], apply_error=None, deployment=deployment(0, 0), min_replicas=2)
    )
    assert (fresh["Ready"].status, fresh["Ready"].reason) == (False, "WaitingForReplicas")
    assert fresh["Progressing"].status and not fresh["Degraded"].status
    done = by_type(
        conditions.compute(generation=1, problems=[], apply_error=None, deployment=deployment(2, 2), min_replicas=2)
    )
    assert (done["Ready"].status, done["Progressing"].status, done["Progressing"].reason) == (True, False, "Reconciled")
    stale = by_type(
        conditions.compute(
            generation=1, problems=[], apply_error=None, deployment=deployment(2, 2, observed=1), min_replicas=2
        )
    )
    assert stale["Progressing"].status and stale["Ready"].status  # rolling out, still serving
    bad = by_type(
        conditions.compute(generation=3, problems=["spec.x: no"], apply_error=None, deployment=None, min_replicas=1)
    )
    assert (bad["Degraded"].status, bad["Degraded"].reason, bad["Ready"].status) == (True, "InvalidSpec", False)
    failed = deployment(0, 0) | {
        "status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]}
    }
    stuck = by_type(conditions.compute(generation=1, problems=[], apply_error=None, deployment=failed, min_replicas=1))
    assert (stuck["Degraded"].status, stuck["Degraded"].message) == (True, "quota")


def test_transition_time_moves_only_when_status_flips() -> None:
    first = conditions.render([conditions.Condition("Ready", False, "WaitingForReplicas", "0/1")], 1, [], "T1")
    same = conditions.render([conditions.Condition("Ready", False, "WaitingForReplicas", "0/1")], 2, first, "T2")
    flipped = conditions.render([conditions.Condition("Ready", True, "MinimumReplicasReady", "1")], 2, same, "T3")
    assert [c["lastTransitionTime"] for c in (first[0], same[0], flipped[0])] == ["T1", "T1", "T3"]
    assert same[0]["observedGeneration"] == 2


def test_api_keys_and_tls_come_from_mounted_secrets() -> None:
    s = spec(auth={"apiKeySecretRef": {"name": "rerank-keys", "key": "keys"}}, tls={"secretName": "rerank-tls"})
    deployment = children(s)["Deployment"]
    validate_builtin(deployment)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(deployment)
    assert env["API_KEY_FILE"] == "/etc/reranker/api-keys/keys"
    assert (env["TLS_CERT_FILE"], env["TLS_KEY_FILE"]) == ("/etc/reranker/tls/tls.crt", "/etc/reranker/tls/tls.key")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "rerank-keys"  # a volume: rotation needs no restart
    assert volumes["tls"]["secret"]["secretName"] == "rerank-tls"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["api-keys"]["readOnly"] and mounts["tls"]["mountPath"] == "/etc/reranker/tls"
    assert {container[p]["httpGet"]["scheme"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"HTTPS"}
    assert network.service_url(OWNER, s).startswith("https://")
    _, problems = validation.validate({"model": {"name": "m"}, "env": [{"name": "API_KEY_FILE", "value": "/x"}]}, "i")
    assert problems and "API_KEY_FILE" in problems[0]  # set from spec.auth, not by hand
    plain = children(spec())["Deployment"]
    assert "API_KEY_FILE" not in env_of(plain)
    assert plain["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_network_policy_admits_the_peers_and_the_operator() -> None:
    s = spec(networkPolicy={"allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "search"}}},
                                          {"podSelector": {"matchLabels": {"app": "rag-api"}}}]})  # fmt: skip
    policy = desired_children(OWNER, s, operator_namespace="reranker-system")[("NetworkPolicy", OWNER.name)]
    validate_builtin(policy)
    assert policy["spec"]["podSelector"]["matchLabels"] == common.selector_labels(OWNER.name)
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"team": "search"}}} in peers
    assert {"podSelector": {"matchLabels": {"app": "rag-api"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "reranker-system"}}} in peers
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert ("NetworkPolicy", OWNER.name) not in desired_children(OWNER, spec())
