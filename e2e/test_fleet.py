"""The fleet on a real cluster, as a user runs it: the chart, Rerankers with baked and cached
models, calls through the Service from a pod, autoscaling both ways (and the fleet's size reaching
the pods through the mounted ConfigMap), a registered machine, API keys and a key's own rate limit,
a model that cannot load, the operator replaced mid-rollout, and nothing left behind.

Real-cluster behaviour these rest on: a mounted ConfigMap or Secret changes in the pod only at the
kubelet's next sync of it (up to about a minute, plus its cache's TTL), never at once. And an image
holds only its extra's packages: the operator image once lacked prometheus-client (the test venv
has every extra), which only its pod's CrashLoopBackOff here showed (tests/test_dependencies.py
now checks each package's imports against its extra). A host disk past the kubelet's eviction
threshold taints the node ``disk-pressure`` and nothing schedules (the operator's pod sat Pending
with only a FailedScheduling event): buildah's vfs storage had kept every earlier run's images,
47 GiB, until ``tests/images.py`` pruned the dangling ones after each build. With
``server.apiProcesses`` the container's PID 1 is the supervisor: the kubelet's SIGTERM reaches it
alone and it drains the API processes, then stops the engine (their socket and the metrics' files
live in the /tmp emptyDir; the root file system is read-only).

The tests run in file order and share the cluster (``e2e/conftest.py``); each Reranker is the
test's own, except ``baked``, which the later tests patch and the last one deletes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.conftest import BAKED_MODEL, HUB_MODEL, MODEL_IMAGE, NAMESPACE, REGISTRAR_MACHINE, Kube
from tests.scores import ACROSS_ENGINES, assert_scores_close

pytestmark = pytest.mark.e2e
QUERY = "how do plants make food"
DOCS = ["Photosynthesis turns light into sugar.", "The stock market fell.", "Leaves absorb sunlight."]
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}


def reranker(name: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Reranker sized for a one- or two-core node, float32 so scores compare exactly."""
    body = {"model": model, "resources": SMALL, "server": {"dtype": "float32"},
            "replicas": {"min": 1, "max": 1}, "autoscaling": {"enabled": False}} | spec  # fmt: skip
    return {"apiVersion": "reranker.dev/v1alpha1", "kind": "Reranker",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": body}  # fmt: skip


def condition(kube: Kube, name: str, type_: str) -> dict[str, Any]:
    obj = kube.get("reranker", name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def wait_ready(kube: Kube, name: str, within: float = 420) -> None:
    kube.wait_for(lambda: condition(kube, name, "Ready").get("status") == "True", f"Reranker {name} Ready", within)


def service_url(kube: Kube, name: str) -> str:
    service = kube.get("service", name)
    assert service is not None
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def from_a_pod(kube: Kube, calls: list[dict[str, Any]], concurrency: int = 1) -> list[dict[str, Any]]:
    """Runs HTTP calls from a pod of the cluster (the server image has Python and httpx) and returns
    each one's status and JSON body: what an in-cluster client sees through the Service."""
    script = textwrap.dedent("""
        import concurrent.futures, json, sys, httpx
        calls = json.loads(sys.argv[1])
        def call(c):
            try:
                r = httpx.request(c.get("method", "POST"), c["url"], json=c.get("json"),
                                  headers=c.get("headers"), timeout=120)
                return {"status": r.status_code, "body": r.json() if r.content else None}
            except Exception as e:
                return {"status": 0, "body": repr(e)}
        with concurrent.futures.ThreadPoolExecutor(int(sys.argv[2])) as pool:
            print(json.dumps(list(pool.map(call, calls))))
    """)
    name = f"client-{uuid.uuid4().hex[:8]}"
    kube.kubectl("run", name, "-n", NAMESPACE, f"--image={MODEL_IMAGE}", "--restart=Never", "--command", "--",
                 "python", "-c", script, json.dumps(calls), str(concurrency))  # fmt: skip
    try:
        kube.wait_for(
            lambda: (kube.get("pod", name) or {}).get("status", {}).get("phase") in ("Succeeded", "Failed"),
            f"client pod {name}", 300, every=1,
        )  # fmt: skip
        out = kube.kubectl("logs", name, "-n", NAMESPACE)
    finally:
        kube.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false", check=False)
    results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return results


def rerank_from_a_pod(kube: Kube, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    [answer] = from_a_pod(kube, [{"url": f"{service_url(kube, name)}/v1/rerank", "headers": headers,
                                  "json": {"query": QUERY, "documents": DOCS}}])  # fmt: skip
    return answer


def scores(body: dict[str, Any]) -> list[float]:
    return [next(r["relevance_score"] for r in body["results"] if r["index"] == i) for i in range(len(DOCS))]


def reference(model_dir: Path) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir), device="cpu").predict([(QUERY, d) for d in DOCS])


def delete(kube: Kube, name: str) -> None:
    kube.kubectl("delete", "reranker", name, "-n", NAMESPACE, "--wait=true", "--timeout=300s", check=False)


def warnings_about(kube: Kube, name: str) -> list[dict[str, Any]]:
    events = kube.items("events", f"--field-selector=involvedObject.name={name},type=Warning")
    return [e for e in events if e["involvedObject"]["kind"] == "Reranker"]


# --- the chart -----------------------------------------------------------------------------------


def test_the_operator_runs_in_the_cluster_under_its_own_service_account(cluster: Kube) -> None:
    [pod] = cluster.items("pods", "-l", "app.kubernetes.io/name=reranker-operator", namespace="reranker-system")
    assert pod["spec"]["serviceAccountName"] == "reranker-operator"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])


# --- serving -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baked(cluster: Kube) -> str:
    """The e2e way: a checkpoint copied into the image (e2e/Dockerfile.model) and named by its path."""
    cluster.apply(reranker("baked", {"name": BAKED_MODEL}))
    wait_ready(cluster, "baked")
    return "baked"


def test_models_baked_into_the_image_serve_through_the_service(cluster: Kube, baked: str) -> None:
    from tests.model_fixtures import minilm_cross_dir, xlmr_cross_dir

    # the Dockerfile's way: BAKE_MODEL fetched a hub model at build time (from the hub stand-in)
    cluster.apply(reranker("hub-baked", {"name": HUB_MODEL}))
    wait_ready(cluster, "hub-baked")
    status = cluster.get("reranker", baked)["status"]
    assert status["url"] == f"http://{baked}.{NAMESPACE}.svc:8000"
    listed = cluster.kubectl("get", "rr", "-n", NAMESPACE)
    assert "DEGRADED" in listed.splitlines()[0] and "AsExpected" in listed

    answer = rerank_from_a_pod(cluster, baked)
    assert answer["status"] == 200, answer
    assert_scores_close(scores(answer["body"]), reference(minilm_cross_dir()), ACROSS_ENGINES)
    answer = rerank_from_a_pod(cluster, "hub-baked")
    assert answer["status"] == 200, answer
    assert_scores_close(scores(answer["body"]), reference(xlmr_cross_dir()), ACROSS_ENGINES)
    [health] = from_a_pod(cluster, [{"method": "GET", "url": f"{service_url(cluster, 'hub-baked')}/health"}])
    assert health["body"]["model"]["source"] == f"cache:{HUB_MODEL}"  # the image's verified snapshot
    delete(cluster, "hub-baked")


def fleet_sizes(kube: Kube, name: str) -> list[int]:
    """What each ready pod of ``name`` says the fleet's size is (its /health, from a pod)."""
    pods = [p for p in kube.items("pods", "-l", f"app.kubernetes.io/instance={name}")
            if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
    calls = [{"method": "GET", "url": f"http://{p['status']['podIP']}:8000/health"} for p in pods]
    return sorted(a["body"]["rate_limits"]["fleet_size"] for a in from_a_pod(kube, calls) if a["status"] == 200)


def test_load_scales_up_and_quiet_scales_down(cluster: Kube) -> None:
    cluster.apply(reranker(
        "scaling", {"name": BAKED_MODEL}, replicas={"min": 1, "max": 2},
        autoscaling={"engine": "operator", "targetInProgressRequests": 2, "windowSeconds": 10,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}}},
        rateLimits={"requestsPerSecond": 100000},  # never reached: here for the fleet's size
    ))  # fmt: skip
    wait_ready(cluster, "scaling")
    url = f"{service_url(cluster, 'scaling')}/v1/rerank"
    body = {"query": QUERY, "documents": [f"{d} ({i})" for i in range(8) for d in DOCS]}
    name = f"load-{uuid.uuid4().hex[:6]}"  # 12 clients for up to 3 minutes, from a pod
    script = textwrap.dedent(f"""
        import concurrent.futures, time, httpx
        def client(i):
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                httpx.post({url!r}, json={body!r} | {{"query": f"q {{i}} {{time.monotonic()}}"}}, timeout=120)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            list(pool.map(client, range(12)))
    """)
    cluster.kubectl("run", name, "-n", NAMESPACE, f"--image={MODEL_IMAGE}", "--restart=Never", "--command", "--",
                    "python", "-c", script)  # fmt: skip
    try:
        cluster.wait_for(lambda: (cluster.get("deployment", "scaling") or {}).get("spec", {}).get("replicas") == 2,
                         "the load to scale it to 2", 180)  # fmt: skip
        scaled = [e for e in cluster.items("events", "--field-selector=involvedObject.name=scaling")
                  if e["reason"] == "Scaling"]  # fmt: skip
        assert scaled and "per replica" in scaled[-1]["message"], scaled
        # two ready pods: the operator writes 2 into scaling-fleet, and the kubelet brings it to each pod
        cluster.wait_for(lambda: (cluster.get("configmap", "scaling-fleet") or {}).get("data", {}).get("size") == "2",
                         "the fleet ConfigMap to say 2", 240)  # fmt: skip
        written = time.monotonic()
        cluster.wait_for(lambda: fleet_sizes(cluster, "scaling") == [2, 2], "both pods to divide by 2", 240, every=5)
        print(f"the pods read the new fleet size {time.monotonic() - written:.0f}s after the operator wrote it")
    finally:
        cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false", check=False)
    cluster.wait_for(lambda: cluster.get("deployment", "scaling")["spec"]["replicas"] == 1,
                     "quiet to scale it back to 1", 180)  # fmt: skip
    delete(cluster, "scaling")


# --- a machine outside the cluster -----------------------------------------------------------------


@contextlib.contextmanager
def machine_address(kube: Kube) -> Iterator[tuple[list[str], str]]:
    """A command prefix and an address for a server outside the cluster: a network namespace of its
    own on the local cluster, the host on kind's network otherwise."""
    if kube.reach.machines_in_namespaces:
        netns = f"e2e-{uuid.uuid4().hex[:6]}"
        host_side, inside = f"{netns}-h", f"{netns}-m"

        def ip(*args: str) -> None:
            subprocess.run(["ip", *args], check=True, capture_output=True)

        ip("netns", "add", netns)
        try:
            ip("link", "add", host_side, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", netns)
            ip("addr", "add", "10.254.253.1/30", "dev", host_side)
            ip("link", "set", host_side, "up")
            for args in (["addr", "add", "10.254.253.2/30", "dev", inside], ["link", "set", inside, "up"],
                         ["link", "set", "lo", "up"], ["route", "add", "default", "via", "10.254.253.1"]):  # fmt: skip
                ip("netns", "exec", netns, "ip", *args)
            yield ["ip", "netns", "exec", netns], "10.254.253.2"
        finally:
            subprocess.run(["ip", "link", "del", host_side], capture_output=True)
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    elif kube.reach.host_address:
        yield [], kube.reach.host_address
    else:
        pytest.skip("this cluster's pods can't reach a server on this machine")


@contextlib.contextmanager
def baked_model_path() -> Iterator[None]:
    """The machine must report the pods' model name (the baked path), so it loads the same
    checkpoint through a symlink at that path, removed afterwards."""
    from tests.model_fixtures import minilm_cross_dir

    target = Path(BAKED_MODEL)
    made = not target.exists()
    if made:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(minilm_cross_dir())
    try:
        yield
    finally:
        if made:
            target.unlink()


def _machine_served(address: str, port: int) -> float:
    text = httpx.get(f"http://{address}:{port}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("reranker_requests_total{") and 'endpoint="/v1/rerank"' in line)  # fmt: skip


def test_a_registered_machine_serves_part_of_the_traffic_and_sigkill_takes_it_out(
    cluster: Kube, baked: str, tmp_path: Path
) -> None:
    from tests.processes import free_port

    with machine_address(cluster) as (prefix, address), baked_model_path():
        env = cluster.registrar_env(REGISTRAR_MACHINE, tmp_path)  # the chart's per-machine token, not admin
        if prefix:  # inside its namespace the API server is the node's address, not loopback
            kubeconfig = Path(env["KUBECONFIG"])
            kubeconfig.write_text(
                kubeconfig.read_text().replace("https://127.0.0.1:", f"https://{cluster.reach.host_address}:")
            )
        port = free_port()
        log = (tmp_path / "machine.log").open("w")
        machine = subprocess.Popen(
            [*prefix, sys.executable, "-m", "reranker_server", "--host", address, "--port", str(port),
             "--model-name", BAKED_MODEL, "--dtype", "float32", "--register", "--reranker", baked,
             "--namespace", NAMESPACE, "--advertise-address", f"{address}:{port}",
             "--endpoint-name", REGISTRAR_MACHINE],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            cluster.wait_for(lambda: _slice_ready(cluster, baked, address), "the machine in the EndpointSlice", 180)
            calls = [{"url": f"{service_url(cluster, baked)}/v1/rerank",
                      "json": {"query": f"{QUERY} {i}", "documents": DOCS}} for i in range(30)]  # fmt: skip
            answers = from_a_pod(cluster, calls)
            assert [a["status"] for a in answers] == [200] * 30
            served = _machine_served(address, port)
            print(f"\nthe registered machine served {served:.0f} of 30 requests sent to the Service")
            assert 0 < served < 30, f"the machine served {served} of 30"
            machine.send_signal(signal.SIGKILL)
            machine.wait(timeout=30)
            cluster.wait_for(lambda: not _slice_ready(cluster, baked, address), "the machine out of rotation", 120)
            answers = from_a_pod(cluster, calls[:20])
            assert [a["status"] for a in answers] == [200] * 20  # none reached the dead machine
        finally:
            if machine.poll() is None:
                machine.kill()
            cluster.kubectl("delete", "rerankerendpoint", REGISTRAR_MACHINE, "-n", NAMESPACE, "--wait=false",
                            check=False)  # fmt: skip


def _slice_ready(kube: Kube, name: str, address: str) -> bool:
    slices = kube.items("endpointslices", "-l", f"kubernetes.io/service-name={name}")
    return any(address in e["addresses"] and e["conditions"].get("ready") for s in slices
               for e in s.get("endpoints") or [])  # fmt: skip


# --- API keys ------------------------------------------------------------------------------------


def _secret(kube: Kube, key: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-keys", "namespace": NAMESPACE},
                "data": {"keys": base64.b64encode(f"{key}\n".encode()).decode()}})  # fmt: skip


def test_an_api_key_is_enforced_and_a_rotated_key_takes_effect(cluster: Kube) -> None:
    _secret(cluster, "first-key")
    cluster.apply(
        reranker("secured", {"name": BAKED_MODEL}, auth={"apiKeySecretRef": {"name": "api-keys", "key": "keys"}})
    )
    wait_ready(cluster, "secured")
    url = f"{service_url(cluster, 'secured')}/v1/rerank"
    body = {"query": QUERY, "documents": DOCS}

    def statuses(*keys: str | None) -> list[int]:
        calls = [{"url": url, "json": body, "headers": {"Authorization": f"Bearer {k}"} if k else None} for k in keys]
        return [a["status"] for a in from_a_pod(cluster, calls)]

    assert statuses(None, "first-key", "wrong") == [401, 200, 401]
    _secret(cluster, "second-key")  # rotated: the kubelet refreshes the mounted Secret, no restart
    restarts = cluster.items("pods", "-l", "app.kubernetes.io/instance=secured")[0]["status"]["containerStatuses"][0]
    cluster.wait_for(lambda: statuses("first-key", "second-key") == [401, 200], "the rotated key", 240, every=5)
    after = cluster.items("pods", "-l", "app.kubernetes.io/instance=secured")[0]["status"]["containerStatuses"][0]
    assert after["restartCount"] == restarts["restartCount"]
    # a key with its own limit (no Redis, one pod: the pod enforces all of it), through the Service
    _secret(cluster, "second-key\nthrottled-key requests_per_second=0.01 request_burst=1")
    cluster.wait_for(lambda: statuses("throttled-key") == [200], "the throttled key", 240, every=5)
    limited = from_a_pod(cluster, [{"url": url, "json": body, "headers": {"Authorization": "Bearer throttled-key"}}])
    assert limited[0]["status"] == 429, limited
    assert limited[0]["body"]["limit"] == "requests_per_second" and limited[0]["body"]["error_type"] == "rate_limited"
    assert statuses("second-key") == [200]  # another key has its own budget
    assert fleet_sizes(cluster, "secured") == [1]
    delete(cluster, "secured")
    cluster.kubectl("delete", "secret", "api-keys", "-n", NAMESPACE)


# --- the model cache -----------------------------------------------------------------------------


def test_the_model_cache_is_filled_from_a_hub_mirror_and_pods_serve_offline(cluster: Kube, tmp_path: Path) -> None:
    from tests.model_fixtures import xlmr_cross_dir
    from tests.server.fake_hub import FakeHub, serving

    if cluster.reach.host_address is None:
        pytest.skip("this cluster's pods can't reach a hub stand-in on this machine")
    model = "acme/cached-reranker"
    storage: dict[str, Any] = {"size": "1Gi", "accessMode": "ReadWriteOnce"}
    if cluster.reach.host_path_volumes:  # a PersistentVolume on this machine's disk, as a user provides one
        folder = tmp_path / "volume"
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)  # hostPath ignores fsGroup: the loader (UID 10001) must write here
        storage["storageClassName"] = "e2e-manual"
        cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "e2e-models"},
                       "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                                "storageClassName": "e2e-manual", "persistentVolumeReclaimPolicy": "Retain",
                                "hostPath": {"path": str(folder), "type": "Directory"}}})  # fmt: skip
    try:
        with serving(FakeHub.from_dir(model, xlmr_cross_dir()), cluster.reach.host_address) as hub:
            cluster.apply(reranker("cached", {"name": model, "hubEndpoint": hub.url, "cache": {"pvc": storage}}))
            cluster.wait_for(lambda: condition(cluster, "cached", "ModelCached").get("status") == "True",
                             "the loader to fill the cache", 300)  # fmt: skip
            fetched = len(hub.requests)
            assert fetched > 0
            wait_ready(cluster, "cached")
            assert len(hub.requests) == fetched  # the pods asked the hub nothing
        answer = rerank_from_a_pod(cluster, "cached")  # the hub is gone now
        assert answer["status"] == 200, answer
        assert_scores_close(scores(answer["body"]), reference(xlmr_cross_dir()), ACROSS_ENGINES)
        [health] = from_a_pod(cluster, [{"method": "GET", "url": f"{service_url(cluster, 'cached')}/health"}])
        assert health["body"]["model"]["source"] == f"cache:{model}"
    finally:
        delete(cluster, "cached")
        cluster.kubectl("delete", "pv", "e2e-models", "--wait=false", check=False)


# --- failures --------------------------------------------------------------------------------------


def test_a_model_that_cannot_load_degrades_the_reranker_with_the_servers_reason(cluster: Kube) -> None:
    cluster.apply(reranker("broken", {"name": "/models/not-baked-here"}))
    degraded = cluster.wait_for(
        lambda: (c := condition(cluster, "broken", "Degraded")).get("status") == "True" and c,
        "Degraded=True", 300,
    )  # fmt: skip
    assert degraded["reason"] == "ModelLoadFailed", degraded
    assert "the model failed to load" in degraded["message"] and "/models/not-baked-here" in degraded["message"]
    assert condition(cluster, "broken", "Ready")["status"] == "False"
    assert "ModelLoadFailed" in cluster.kubectl("get", "rr", "broken", "-n", NAMESPACE)
    events = cluster.wait_for(lambda: warnings_about(cluster, "broken"), "a Warning Event", 60)
    assert [e["reason"] for e in events] == ["ModelLoadFailed"] and events[0]["message"] == degraded["message"]
    delete(cluster, "broken")


def test_the_operator_deleted_mid_rollout_converges(cluster: Kube, baked: str) -> None:
    generation = cluster.get("reranker", baked)["metadata"]["generation"]
    cluster.kubectl("patch", "reranker", baked, "-n", NAMESPACE, "--type=merge", "-p",
                    '{"spec":{"server":{"batchSize":8}}}')  # fmt: skip
    cluster.kubectl("delete", "pod", "-n", "reranker-system", "-l", "app.kubernetes.io/name=reranker-operator",
                    "--wait=false")  # fmt: skip
    cluster.kubectl("rollout", "status", "deployment/reranker-operator", "-n", "reranker-system", "--timeout=300s")
    cluster.wait_for(
        lambda: {"name": "BATCH_SIZE", "value": "8"}
        in cluster.get("deployment", baked)["spec"]["template"]["spec"]["containers"][0]["env"],
        "the new operator to apply the change", 180,
    )  # fmt: skip
    cluster.kubectl("rollout", "status", f"deployment/{baked}", "-n", NAMESPACE, "--timeout=600s")
    cluster.wait_for(
        lambda: cluster.get("reranker", baked)["status"]["observedGeneration"] == generation + 1
        and condition(cluster, baked, "Progressing").get("reason") == "Reconciled"
        and condition(cluster, baked, "Ready").get("status") == "True",
        "the status to converge", 180,
    )  # fmt: skip


def test_api_processes_serve_in_a_pod_and_drain_when_it_is_deleted(cluster: Kube, baked: str) -> None:
    """``server.apiProcesses: 2`` on a real node: a read-only root file system (the engine's socket
    and the metrics' files live in the /tmp emptyDir), the supervisor as the container's PID 1, the
    kubelet's SIGTERM to it alone."""
    cluster.kubectl("patch", "reranker", baked, "-n", NAMESPACE, "--type=merge", "-p",
                    '{"spec":{"server":{"apiProcesses":2}}}')  # fmt: skip
    cluster.kubectl("rollout", "status", f"deployment/{baked}", "-n", NAMESPACE, "--timeout=600s")
    wait_ready(cluster, baked)
    [pod] = [p for p in cluster.items("pods", "-l", f"app.kubernetes.io/instance={baked}")
             if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
    name = pod["metadata"]["name"]
    # the container's PID 1 (the supervisor) spawned the engine and two API processes (this exec's
    # own python is no child of it; its command line would name what it looks for)
    count = textwrap.dedent("""
        import glob
        kids = " ".join(open(t).read() for t in glob.glob("/proc/1/task/*/children")).split()
        print(sum(b"spawn_main" in open(f"/proc/{k}/cmdline", "rb").read() for k in kids))
    """)
    spawned = cluster.kubectl("exec", name, "-n", NAMESPACE, "--", "python", "-c", count)
    assert spawned.strip() == "3"
    from tests.model_fixtures import minilm_cross_dir

    answers = from_a_pod(cluster, [{"url": f"{service_url(cluster, baked)}/v1/rerank",
                                    "json": {"query": QUERY, "documents": DOCS}}] * 6, concurrency=6)  # fmt: skip
    assert [a["status"] for a in answers] == [200] * 6, answers
    for answer in answers:
        assert_scores_close(scores(answer["body"]), reference(minilm_cross_dir()), ACROSS_ENGINES)
    # the pod's metrics, added up over its processes: the autoscaler reads one series per pod
    metrics = cluster.kubectl("exec", name, "-n", NAMESPACE, "--", "python", "-c",
                              "import httpx; print(httpx.get('http://127.0.0.1:8000/metrics').text)")  # fmt: skip
    assert [line for line in metrics.splitlines() if line.startswith("reranker_ready ")] == ["reranker_ready 1.0"]
    assert len([line for line in metrics.splitlines() if line.startswith("reranker_requests_in_progress ")]) == 1
    served = next(line for line in metrics.splitlines()
                  if line.startswith('reranker_requests_total{endpoint="/v1/rerank",status="200"}'))  # fmt: skip
    assert float(served.split()[-1]) >= 6
    started = time.monotonic()
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=true", "--timeout=120s")
    drained = time.monotonic() - started
    assert drained < 60, f"the pod took {drained:.0f}s to stop: SIGTERM did not reach the processes"
    wait_ready(cluster, baked)


def test_deleting_a_reranker_leaves_nothing(cluster: Kube, baked: str) -> None:
    delete(cluster, baked)
    for kind in ("deployment", "service", "poddisruptionbudget", "networkpolicy"):
        cluster.wait_for(lambda k=kind: cluster.get(k, baked) is None, f"{kind}/{baked} to be gone", 180)
    cluster.wait_for(lambda: not cluster.items("pods", "-l", f"app.kubernetes.io/instance={baked}"),
                     "its pods to be gone", 180)  # fmt: skip
    cluster.wait_for(lambda: not cluster.items("endpointslices", "-l", f"app.kubernetes.io/instance={baked}"),
                     "its EndpointSlices to be gone", 180)  # fmt: skip
    assert not cluster.items("rerankers")  # every test's Reranker went with its test
