"""The whole fleet on a real kind cluster: chart -> Reranker -> Ready -> rerank -> rollout ->
an external endpoint in the Service's EndpointSlice -> delete leaves nothing behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from e2e.conftest import BAKED_MODEL, NAMESPACE, REGISTRAR_MACHINE, REPO, Kube
from tests.scores import ACROSS_ENGINES, assert_scores_close

pytestmark = pytest.mark.e2e
NAME = "minilm"


def example_reranker() -> dict[str, Any]:
    """examples/reranker-cpu.yaml, as CI validates it, with only what a kind node needs changed."""
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "reranker-cpu.yaml").read_text())
    manifest["metadata"].update(name=NAME, namespace=NAMESPACE)
    manifest["spec"]["model"]["name"] = BAKED_MODEL  # baked into the image: no hub access
    manifest["spec"]["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    # the operator engine (needs nothing in the cluster), held at one pod: the test counts it
    manifest["spec"]["autoscaling"] = {"engine": "operator"}
    manifest["spec"]["replicas"] = {"min": 1, "max": 1}
    return manifest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def condition(kube: Kube, kind: str, name: str, type_: str) -> dict[str, Any]:
    obj = kube.get(kind, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def test_fleet_end_to_end(cluster: Kube, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from tests.model_fixtures import minilm_cross_dir

    kube = cluster
    kube.apply(example_reranker())
    kube.wait_for(lambda: condition(kube, "reranker", NAME, "Ready").get("status") == "True", "Reranker Ready", 600)
    status = kube.get("reranker", NAME)["status"]
    assert status["url"] == f"http://{NAME}.{NAMESPACE}.svc:8000"
    # the operator reads the pod's /metrics in the real cluster (pod network, RBAC on pods)
    kube.wait_for(lambda: kube.get("reranker", NAME)["status"].get("autoscaling", {}).get("load") is not None,
                  "autoscaler load in status", 120)  # fmt: skip

    # call /v1/rerank through a port-forward and compare with a local reference
    port = free_port()
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "-n", NAMESPACE, f"svc/{NAME}", f"{port}:8000"], env=kube.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        query = "how do plants make food"
        docs = ["Photosynthesis turns light into sugar.", "The stock market fell.", "Leaves absorb sunlight."]
        body = kube.wait_for(
            lambda: _try_post(f"http://127.0.0.1:{port}/v1/rerank", {"query": query, "documents": docs}),
            "the Service to answer", 60,
        )  # fmt: skip
    finally:
        forward.terminate()
    served = np.array([next(r["relevance_score"] for r in body["results"] if r["index"] == i) for i in range(3)])
    reference = CrossEncoder(str(minilm_cross_dir()), device="cpu").predict([(query, d) for d in docs])
    assert_scores_close(served, reference, ACROSS_ENGINES)

    # a spec change rolls out
    generation = kube.get("deployment", NAME)["metadata"]["generation"]
    kube.kubectl(
        "patch", "reranker", NAME, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"server":{"batchSize":8}}}'
    )
    kube.wait_for(
        lambda: kube.get("deployment", NAME)["metadata"]["generation"] > generation, "a new Deployment generation"
    )
    kube.kubectl("rollout", "status", f"deployment/{NAME}", "-n", NAMESPACE, "--timeout=600s")
    env = kube.get("deployment", NAME)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "BATCH_SIZE", "value": "8"} in env

    # a reranker-server on the host registers itself and appears in the Service's EndpointSlice
    gateway = _kind_gateway()
    _link_baked_model_path()
    host_port = free_port()
    log = (tmp_path / "host-server.log").open("w")
    host = subprocess.Popen(
        [sys.executable, "-m", "reranker_server", "--host", gateway, "--port", str(host_port),
         "--model-name", BAKED_MODEL, "--register", "--reranker", NAME, "--namespace", NAMESPACE,
         "--advertise-address", f"{gateway}:{host_port}", "--endpoint-name", REGISTRAR_MACHINE],
        env=kube.registrar_env(REGISTRAR_MACHINE, tmp_path),  # the chart's per-machine token, not admin
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        kube.wait_for(lambda: _slice_ready(kube, gateway), "the host server in the EndpointSlice", 180)
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=60)
    kube.wait_for(lambda: kube.get("rerankerendpoint", REGISTRAR_MACHINE) is None, "the host server to withdraw", 60)

    # deleting the Reranker deletes everything it owned
    kube.kubectl("delete", "reranker", NAME, "-n", NAMESPACE, "--wait=true", "--timeout=300s")
    for kind in ("deployment", "service", "poddisruptionbudget"):
        kube.wait_for(lambda k=kind: kube.get(k, NAME) is None, f"{kind}/{NAME} to be gone", 180)
    kube.wait_for(
        lambda: not kube.kubectl("get", "endpointslices", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={NAME}",
                                 "-o", "name").strip(),
        "the external EndpointSlices to be gone", 180,
    )  # fmt: skip


def _try_post(url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        response = httpx.post(url, json=body, timeout=30)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _kind_gateway() -> str:
    """The host's address on kind's Docker network: pods reach the host there."""
    out = subprocess.run(
        ["docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return next(a for a in out if "." in a)


def _link_baked_model_path() -> None:
    """The host server must report the pods' model name (the baked path), so it loads the same
    checkpoint through a symlink at that path."""
    target = Path(BAKED_MODEL)
    if target.exists():
        return
    from tests.model_fixtures import minilm_cross_dir

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(minilm_cross_dir())
    except OSError as exc:
        pytest.fail(f"cannot create {BAKED_MODEL} on this host for the external endpoint: {exc}")


def _slice_ready(kube: Kube, address: str) -> bool:
    out = kube.kubectl(
        "get", "endpointslices", "-n", NAMESPACE, "-l", f"kubernetes.io/service-name={NAME}", "-o", "yaml"
    )
    slices = yaml.safe_load(out)["items"]
    return any(address in e["addresses"] and e["conditions"]["ready"] for s in slices for e in s.get("endpoints") or [])
