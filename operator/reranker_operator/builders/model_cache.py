"""``spec.model.cache``: a claim filled once by a loader Job, mounted read-only by every pod; its
names, access mode, builders, and the state its loader reports.

The loader runs the server image's own ``reranker-server download`` into the claim (Hugging Face
cache layout, resumable, verified). Server pods wait in an init container (``download --wait``)
until the loader has written its verified marker, then load with ``HF_HUB_OFFLINE=1``. Waiting in
the pod rather than holding the Deployment at zero keeps a changed model's rollout safe: the old
pods (old claim) serve until the new ones are ready (maxUnavailable 0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from reranker_contract import server_env as env_names
from reranker_operator.builders.common import (
    CONTAINER_SECURITY,
    MODEL_CACHE_DIR,
    POD_SECURITY,
    Manifest,
    Owner,
    loader_labels,
    metadata,
)
from reranker_operator.cluster import ClusterFacts
from reranker_operator.models import AccessMode, ModelRef, RerankerSpec
from reranker_operator.profiles import PROFILES, HardwareProfile

__all__ = ["AccessMode", "CacheState"]

MOUNT = MODEL_CACHE_DIR
HF_HOME = f"{MOUNT}/hf"
HUB_CACHE = f"{HF_HOME}/hub"
LOADER_CONTAINER = "loader"
# Storage whose volumes one node writes and many nodes then mount (file systems, not block
# devices). Any other provisioner gets ReadWriteOnce: its pods must share the loader's node.
MANY_NODE_PROVISIONERS = frozenset(
    {"efs.csi.aws.com", "filestore.csi.storage.gke.io", "file.csi.azure.com", "nfs.csi.k8s.io",
     "cephfs.csi.ceph.com", "rook-ceph.cephfs.csi.ceph.com", "k8s-sigs.io/nfs-subdir-external-provisioner",
     "cluster.local/nfs-subdir-external-provisioner", "csi.trident.netapp.io", "fsx.csi.aws.com"}
)  # fmt: skip
SELECTED_NODE = "volume.kubernetes.io/selected-node"  # set on a claim when its first consumer is scheduled


def key(model: ModelRef) -> str:
    """A short stable id of what is cached: a changed name or revision is a new claim and a new load."""
    return hashlib.sha256(f"{model.name}@{model.revision or 'main'}".encode()).hexdigest()[:8]


def claim_name(owner_name: str, model: ModelRef) -> str:
    cache = model.cache
    if cache is not None and cache.pvc.existing_claim:
        return cache.pvc.existing_claim
    return f"{owner_name}-model-{key(model)}"


def job_name(owner_name: str, model: ModelRef) -> str:
    return f"{owner_name}-load-{key(model)}"


def access_mode(model: ModelRef, provisioner: str | None) -> AccessMode:
    """The spec's mode, else ReadOnlyMany where the class's volumes can be mounted on many nodes."""
    assert model.cache is not None
    if model.cache.pvc.access_mode:
        return model.cache.pvc.access_mode
    return "ReadOnlyMany" if provisioner in MANY_NODE_PROVISIONERS else "ReadWriteOnce"


def pvc(metadata: dict[str, Any], model: ModelRef, mode: AccessMode) -> dict[str, Any] | None:
    """The claim (None with existingClaim). ReadOnlyMany is asked as ReadWriteOnce + ReadOnlyMany:
    the loader writes it on one node, the servers read it on many."""
    assert model.cache is not None
    settings = model.cache.pvc
    if settings.existing_claim:
        return None
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce", "ReadOnlyMany"] if mode == "ReadOnlyMany" else ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.size}},
    }
    if settings.storage_class_name:
        spec["storageClassName"] = settings.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


@dataclass(frozen=True)
class OnnxGraphs:
    """What the loader makes for pods that run ONNX Runtime: graphs in these dtypes, within the
    pods' own memory limit (the export needs what a pod that made them itself would)."""

    dtypes: tuple[str, ...]
    memory: str


def download_command(model: ModelRef, wait: bool = False, graphs: OnnxGraphs | None = None) -> list[str]:
    args = ["reranker-server", "download", model.name, "--cache-dir", HUB_CACHE]
    if model.revision:
        args += ["--revision", model.revision]
    if graphs is not None:
        args += ["--onnx", ",".join(graphs.dtypes)]
    return args + (["--wait"] if wait else [])


def volume(owner_name: str, model: ModelRef, read_only: bool) -> dict[str, Any]:
    claim = {"claimName": claim_name(owner_name, model), "readOnly": read_only}
    return {"name": "model-cache", "persistentVolumeClaim": claim}


def wait_container(model: ModelRef, image: str, security: dict[str, Any]) -> dict[str, Any]:
    """The server pod's init container: returns once the loader has verified the model."""
    return {
        "name": "wait-for-model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": download_command(model, wait=True),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": security,
        "volumeMounts": [{"name": "model-cache", "mountPath": MOUNT, "readOnly": True}],
    }


def loader_job(
    metadata: dict[str, Any],
    pod_labels: dict[str, str],
    owner_name: str,
    model: ModelRef,
    image: str,
    pod_security: dict[str, Any],
    container_security: dict[str, Any],
    graphs: OnnxGraphs | None = None,
) -> dict[str, Any]:
    """``graphs``: for pods that run ONNX Runtime, the loader also makes their graphs into the claim
    (``download --onnx``): the read-only pods start from them instead of each exporting the model."""
    # online even in an image built for offline pods (the Dockerfile's BAKE_MODEL sets HF_HUB_OFFLINE=1)
    env: list[dict[str, Any]] = [{"name": env_names.HF_HOME, "value": HF_HOME},
                                 {"name": env_names.HF_HUB_OFFLINE, "value": "0"}]  # fmt: skip
    if model.hub_endpoint:
        env.append({"name": env_names.HF_ENDPOINT, "value": model.hub_endpoint})
    if model.token_secret_ref is not None:
        ref = model.token_secret_ref
        env.append({"name": env_names.HF_TOKEN, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    container = {
        "name": LOADER_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": download_command(model, graphs=graphs),
        "env": env,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": graphs.memory if graphs else "1Gi"},  # a download alone streams its files
        },
        "securityContext": container_security,
        "volumeMounts": [{"name": "model-cache", "mountPath": MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            # a restarted container resumes the partial files the claim keeps; 6 tries then Failed
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": [volume(owner_name, model, read_only=False), {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def pinned_node(claim: dict[str, Any] | None, mode: AccessMode) -> str | None:
    """A ReadWriteOnce claim attaches to one node: the servers must run where the loader ran."""
    if mode != "ReadWriteOnce" or claim is None:
        return None
    node = ((claim.get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE)
    return str(node) if node else None


Phase = Literal["Loading", "Cached", "Failed"]


@dataclass(frozen=True)
class CacheState:
    phase: Phase
    message: str
    downloaded: int | None = None
    total: int | None = None

    def status(self, claim: str, mode: AccessMode) -> dict[str, Any]:
        out: dict[str, Any] = {"claim": claim, "accessMode": mode, "phase": self.phase, "summary": self.summary}
        if self.total:
            out |= {"downloadedBytes": self.downloaded or 0, "totalBytes": self.total}
        return out

    @property
    def summary(self) -> str:
        """What ``kubectl get rr`` shows: Cached, Failed, or how far the load is."""
        if self.phase != "Loading" or not self.total:
            return self.phase
        return f"{(self.downloaded or 0) / self.total:.0%} of {_gigabytes(self.total)}"


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def state(job: dict[str, Any] | None, progress: dict[str, int] | None) -> CacheState:
    """The load's state from its Job, and the progress the loader last printed."""
    status = (job or {}).get("status") or {}
    if int(status.get("succeeded") or 0) >= 1:
        return CacheState("Cached", "the model is in the cache")
    failed = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed"), None)
    if failed and failed.get("status") == "True":
        why = failed.get("message") or failed.get("reason") or "the loader failed"
        return CacheState("Failed", f"loader Job failed: {why} (see the loader pod's log)")
    done, total = (progress or {}).get("downloadedBytes"), (progress or {}).get("totalBytes")
    if total:
        return CacheState("Loading", f"downloading: {done or 0} of {total} bytes", done, total)
    return CacheState("Loading", "the loader Job is starting")


def last_progress(log: str) -> dict[str, int] | None:
    """The last ``{"downloadedBytes", "totalBytes"}`` line ``reranker-server download`` printed."""
    for line in reversed(log.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("totalBytes"), int):
            return {"downloadedBytes": int(data.get("downloadedBytes") or 0), "totalBytes": data["totalBytes"]}
    return None


def cache_access_mode(spec: RerankerSpec, cluster: ClusterFacts) -> AccessMode:
    assert spec.model.cache is not None
    return access_mode(spec.model, cluster.provisioner(spec.model.cache.pvc.storage_class_name))


def _onnx_graphs(profile: HardwareProfile) -> OnnxGraphs | None:
    """The graphs the pods will run when they run ONNX Runtime (CPU pods, an engine that picks it, a
    dtype it runs; DTYPE=auto compares int8 with float32 at start-up), within their memory limit
    (the CPU profile's where they have none); None for pods that run PyTorch."""
    runs_onnx = profile.engine in ("auto", "onnxruntime") and profile.dtype in ("auto", *env_names.ONNX_RUNTIME_DTYPES)
    if profile.hardware_class != "cpu" or not runs_onnx:
        return None
    dtypes = ("float32",) if profile.dtype == "float32" else ("float32", "int8")
    return OnnxGraphs(dtypes, profile.limits.get("memory") or PROFILES["cpu"].limits["memory"])


def model_cache_children(
    owner: Owner, spec: RerankerSpec, profile: HardwareProfile, image: str, mode: AccessMode
) -> list[Manifest | None]:
    """The claim (unless it exists already) and the Job that fills it, for this model and revision."""
    model = spec.model
    claim_meta = metadata(owner, claim_name(owner.name, model), profile.hardware_class)
    job_meta = metadata(owner, job_name(owner.name, model), profile.hardware_class)
    job_meta["labels"] = loader_labels(owner.name, profile.hardware_class)
    job = loader_job(job_meta, job_meta["labels"], owner.name, model, image, POD_SECURITY,
                                 CONTAINER_SECURITY, _onnx_graphs(profile))  # fmt: skip
    return [pvc(claim_meta, model, mode), job]
