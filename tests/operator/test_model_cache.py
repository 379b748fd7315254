"""spec.model.cache: the claim, the loader Job, the pods that wait for it and run offline, and the
ModelCached status - pure builders, every manifest checked against the real Kubernetes schemas."""

from __future__ import annotations

from typing import Any

import pytest

from reranker_operator import cluster, conditions, ownership, validation
from reranker_operator.builders import common, model_cache
from reranker_operator.models import RerankerSpec
from tests.operator.manifests import desired_children, validate_builtin

OWNER = common.Owner(name="search", namespace="rag", uid="1234-5678")
EFS = cluster.ClusterFacts(
    provisioners={"efs": "efs.csi.aws.com", "gp3": "ebs.csi.aws.com"}, default_storage_class="gp3"
)


def spec(cache: dict[str, Any] | None = None, **model: Any) -> RerankerSpec:
    fields: dict[str, Any] = {"name": "BAAI/bge-reranker-v2-m3"} | model
    if cache is not None:
        fields["cache"] = {"pvc": cache}
    return RerankerSpec.model_validate({"model": fields})


def desired(s: RerankerSpec, facts: cluster.ClusterFacts = EFS, live: dict[Any, Any] | None = None) -> dict[str, Any]:
    built = desired_children(OWNER, s, image="img:1", cluster=facts, live=live or {})
    for manifest in built.values():
        validate_builtin(manifest)
    return {kind: m for (kind, _), m in built.items()}


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_claim_job_and_pods_for_a_cached_model() -> None:
    s = spec({"size": "20Gi", "storageClassName": "efs"}, revision="v2", tokenSecretRef={"name": "hf", "key": "token"})
    out = desired(s)
    key = model_cache.key(s.model)
    claim, job, deploy = out["PersistentVolumeClaim"], out["Job"], out["Deployment"]
    assert claim["metadata"]["name"] == f"search-model-{key}"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "efs",
                             "resources": {"requests": {"storage": "20Gi"}}}  # fmt: skip
    assert claim["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid  # goes with the Reranker

    loader = job["spec"]["template"]["spec"]["containers"][0]
    assert loader["command"] == ["reranker-server", "download", "BAAI/bge-reranker-v2-m3",
                                 "--cache-dir", "/models/hf/hub", "--revision", "v2",
                                 "--onnx", "float32,int8"]  # fmt: skip
    assert env(loader)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"  # resumes on the claim
    job_volume = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert job_volume == {"claimName": claim["metadata"]["name"], "readOnly": False}
    # the loader's pod must not receive traffic, nor be taken for a server pod
    selector = out["Service"]["spec"]["selector"]
    assert not selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()

    pod = deploy["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert env(server)["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env(server)
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    model_volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert model_volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"], "readOnly": True}
    [wait] = pod["initContainers"]
    assert wait["command"][-1] == "--wait" and wait["command"][:3] == loader["command"][:3]
    assert "affinity" not in pod  # ReadOnlyMany: any node


def test_the_loader_makes_the_onnx_graphs_only_for_pods_that_run_onnx_runtime_within_their_memory() -> None:
    def loader(**fields: Any) -> dict[str, Any]:
        s = RerankerSpec.model_validate({"model": {"name": "m", "cache": {"pvc": {"size": "1Gi"}}}} | fields)
        return dict(desired(s)["Job"]["spec"]["template"]["spec"]["containers"][0])

    cpu = loader()  # the CPU profile: ENGINE=auto runs encoders on ONNX Runtime, DTYPE=auto tries int8
    assert cpu["command"][-2:] == ["--onnx", "float32,int8"] and cpu["resources"]["limits"] == {"memory": "4Gi"}
    assert loader(server={"dtype": "float32"})["command"][-2:] == ["--onnx", "float32"]
    bigger = loader(resources={"limits": {"cpu": "8", "memory": "12Gi"}})
    assert bigger["resources"]["limits"] == {"memory": "12Gi"}  # the export needs what a pod would
    for pytorch_pods in ({"hardwareClass": "nvidia-gpu"}, {"server": {"engine": "pytorch"}},
                         {"server": {"dtype": "bfloat16"}}):  # fmt: skip
        plain = loader(**pytorch_pods)
        assert "--onnx" not in plain["command"] and plain["resources"]["limits"] == {"memory": "1Gi"}, pytorch_pods


def test_access_mode_follows_the_storage_class_unless_the_spec_says() -> None:
    assert desired(spec({"size": "1Gi"}))["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    efs = spec({"size": "1Gi", "storageClassName": "efs"})
    assert "ReadOnlyMany" in desired(efs)["PersistentVolumeClaim"]["spec"]["accessModes"]
    forced = spec({"size": "1Gi", "storageClassName": "efs", "accessMode": "ReadWriteOnce"})
    assert desired(forced)["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    unknown = cluster.ClusterFacts()  # storage classes unreadable: the mode every class supports
    assert desired(spec({"size": "1Gi"}), unknown)["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_a_read_write_once_claim_pins_the_pods_to_its_node() -> None:
    s = spec({"size": "1Gi"})  # gp3, the default: block storage
    name = model_cache.claim_name(OWNER.name, s.model)
    assert "affinity" not in desired(s)["Deployment"]["spec"]["template"]["spec"]  # not yet attached anywhere
    live = {("PersistentVolumeClaim", name): {"metadata": {"annotations": {model_cache.SELECTED_NODE: "node-7"}}}}
    affinity = desired(s, live=live)["Deployment"]["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-7"]}]}]
    shared = spec({"size": "1Gi", "storageClassName": "efs"})
    live = {
        ("PersistentVolumeClaim", model_cache.claim_name(OWNER.name, shared.model)): live[
            ("PersistentVolumeClaim", name)
        ]
    }
    assert "affinity" not in desired(shared, live=live)["Deployment"]["spec"]["template"]["spec"]


def test_an_existing_claim_is_used_not_created() -> None:
    out = desired(spec({"existingClaim": "team-models"}))
    assert "PersistentVolumeClaim" not in out
    assert out["Job"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "team-models"
    volumes = out["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "team-models", "readOnly": True}} in volumes


def test_a_new_model_or_revision_is_a_new_claim_and_a_new_load() -> None:
    names = {
        (model_cache.claim_name("s", m.model), model_cache.job_name("s", m.model))
        for m in (spec({"size": "1Gi"}), spec({"size": "1Gi"}, revision="v2"), spec({"size": "1Gi"}, name="other/m"))
    }
    assert len(names) == 3


def test_without_a_cache_pods_download_themselves_with_the_token() -> None:
    out = desired(spec(tokenSecretRef={"name": "hf", "key": "token"}))
    assert "Job" not in out and "PersistentVolumeClaim" not in out
    server = out["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert env(server)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "HF_HUB_OFFLINE" not in env(server)
    assert "initContainers" not in out["Deployment"]["spec"]["template"]["spec"]


def test_jobs_and_claims_are_created_once_then_left_alone() -> None:
    """A Job's template is immutable: re-applying a changed one (a new image) would be refused."""
    s = spec({"size": "1Gi"})
    built = desired_children(OWNER, s, image="img:2", cluster=EFS)
    job_key = ("Job", model_cache.job_name(OWNER.name, s.model))
    live = {job_key: {"metadata": {"name": job_key[1]}, "spec": {"template": {"image": "img:1"}}}}
    todo = ownership.plan(built, live, OWNER.uid)
    assert job_key not in {(m["kind"], m["metadata"]["name"]) for m in todo.apply}


@pytest.mark.parametrize(
    ("job_status", "progress", "phase", "summary"),
    [
        (None, None, "Loading", "Loading"),
        ({"active": 1}, {"downloadedBytes": 550_000_000, "totalBytes": 2_200_000_000}, "Loading", "25% of 2.2 GB"),
        ({"succeeded": 1}, {"downloadedBytes": 1, "totalBytes": 2}, "Cached", "Cached"),
        ({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                          "message": "Job has reached the specified backoff limit"}]}, None, "Failed", "Failed"),
    ],
)  # fmt: skip
def test_cache_state(
    job_status: dict[str, Any] | None, progress: dict[str, int] | None, phase: str, summary: str
) -> None:
    job = {"status": job_status} if job_status is not None else None
    state = model_cache.state(job, progress)
    assert (state.phase, state.summary) == (phase, summary)


def test_progress_is_the_last_json_line_of_the_loader_log() -> None:
    log = 'starting\n{"downloadedBytes": 10, "totalBytes": 100}\nmodel.safetensors: reset; resuming\n'
    log += '{"downloadedBytes": 60, "totalBytes": 100}\n 60%|######    | 60/100\n'
    assert model_cache.last_progress(log) == {"downloadedBytes": 60, "totalBytes": 100}
    assert model_cache.last_progress("no progress yet\n") is None


def _conditions(
    cache: model_cache.CacheState, deployment: dict[str, Any] | None = None
) -> dict[str, conditions.Condition]:
    computed = conditions.compute(
        generation=1, problems=[], apply_error=None, deployment=deployment, min_replicas=1, cache=cache
    )
    return {c.type: c for c in computed}


def test_conditions_while_loading_after_and_on_failure() -> None:
    loading = _conditions(model_cache.CacheState("Loading", "downloading: 1 of 2 bytes", 1, 2))
    assert (loading["ModelCached"].status, loading["ModelCached"].reason) == (False, "Loading")
    assert loading["Progressing"].reason == "LoadingModel" and not loading["Degraded"].status
    # the init container outlasting the rollout deadline is the load, not a fault
    stalled = {"status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}}
    assert not _conditions(model_cache.CacheState("Loading", "x"), stalled)["Degraded"].status
    failed = _conditions(model_cache.CacheState("Failed", "loader Job failed: BackoffLimitExceeded"))
    assert (failed["Degraded"].status, failed["Degraded"].reason) == (True, "ModelLoadFailed")
    assert "BackoffLimitExceeded" in failed["ModelCached"].message
    assert _conditions(model_cache.CacheState("Cached", "ok"))["ModelCached"].status


@pytest.mark.parametrize(
    ("pvc", "problem"),
    [({}, "model.cache.pvc.size: required"), ({"size": "1Gi", "create": False}, "existingClaim must name")],
)
def test_invalid_cache_specs_are_named(pvc: dict[str, Any], problem: str) -> None:
    _, problems = validation.validate({"model": {"name": "m", "cache": {"pvc": pvc}}}, "img")
    assert any(problem in p and p.startswith("spec.model.cache.pvc") for p in problems), problems


def test_a_hub_mirror_reaches_the_loader_and_never_the_offline_pods() -> None:
    s = spec({"size": "1Gi"}, hubEndpoint="http://hub-mirror.internal:8080")
    out = desired(s)
    loader = out["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert env(loader)["HF_ENDPOINT"] == "http://hub-mirror.internal:8080"
    assert env(loader)["HF_HUB_OFFLINE"] == "0"  # an image baked for offline pods still downloads here
    assert "HF_ENDPOINT" not in env(out["Deployment"]["spec"]["template"]["spec"]["containers"][0])


def test_without_a_cache_the_pods_fetch_from_the_mirror() -> None:
    server = desired(spec(hubEndpoint="https://mirror.example"))["Deployment"]["spec"]["template"]["spec"]
    assert env(server["containers"][0])["HF_ENDPOINT"] == "https://mirror.example"
    assert env(server["containers"][0])["HF_HUB_OFFLINE"] == "0"
    assert "HF_ENDPOINT" not in env(desired(spec())["Deployment"]["spec"]["template"]["spec"]["containers"][0])


def test_the_operators_mirror_is_the_default_and_the_spec_wins() -> None:
    from reranker_operator.models import with_hub_endpoint

    assert with_hub_endpoint(spec(), "http://chart-mirror").model.hub_endpoint == "http://chart-mirror"
    assert with_hub_endpoint(spec(hubEndpoint="http://own"), "http://chart-mirror").model.hub_endpoint == "http://own"
    assert with_hub_endpoint(spec(), None).model.hub_endpoint is None
    with pytest.raises(ValueError, match=r"hub_endpoint|hubEndpoint"):
        spec(hubEndpoint="ftp://nope")
