"""A real reranker-server registers itself as an external endpoint (a Mac mini stand-in) against
the emulated API, and the real operator probes it and keeps the EndpointSlices current.

EndpointSlices may not hold loopback addresses, so the server runs in a network namespace this
test creates (a veth pair on 10.213.N.0/30): the address the operator probes is a real,
non-loopback address of a test host that exists only for this test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from tests.operator.conftest import Cluster
from tests.operator.emulator import ApiServerEmulator, running_operator
from tests.operator.fleet_pods import PodController, load
from tests.operator.manifests import validate_builtin
from tests.operator.rbac import chart_authorizer
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.helm]
PROBE_INTERVAL = 1.0
SLICES = "discovery.k8s.io/v1/endpointslices"


@pytest.fixture(scope="module")
def test_host() -> Iterator[tuple[str, str, str]]:
    """(netns name, host-side address, test-host address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    n = os.getpid() % 250
    ns, host_if, peer_if = f"rrtest{n}", f"rrh{n}", f"rrn{n}"
    host_ip, peer_ip = f"10.213.{n}.1", f"10.213.{n}.2"
    commands = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
        ["ip", "link", "set", peer_if, "netns", ns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if],
        ["ip", "netns", "exec", ns, "ip", "link", "set", peer_if, "up"],
        ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(f"cannot create the test host ({' '.join(command)}): {result.stderr.strip()}")
        yield ns, host_ip, peer_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class MacMini:
    """reranker-server in the test host's namespace, registered with --register."""

    def __init__(self, ns: str, address: str, kubeconfig: Path, log: Path, model: str | None, name: str) -> None:
        self.port = free_port()
        self.url = f"http://{address}:{self.port}"
        self.log = log
        # float32 pinned: on a CPU with native bf16, DTYPE=auto would pick bfloat16 and PyTorch
        env = os.environ | {"KUBECONFIG": str(kubeconfig), "LEASE_SECONDS": "6", "DTYPE": "float32"}
        if model:
            env["MODEL_NAME"] = model
        args = ["--host", address, "--port", str(self.port), "--register", "--reranker", "fleet",
                "--namespace", "search", "--advertise-address", f"{address}:{self.port}",
                "--endpoint-name", name]  # fmt: skip
        self._sink = log.open("w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "reranker_server", *args],
            env=env,
            stdout=self._sink,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    if (await client.get(f"{self.url}/ready", timeout=1)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(self.log.read_text())

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            await asyncio.to_thread(self.proc.wait)
        self._sink.close()


@pytest.fixture
async def fleet(test_host: tuple[str, str, str], tmp_path: Path) -> AsyncIterator[tuple[Cluster, Any]]:
    ns, host_ip, peer_ip = test_host
    async with ApiServerEmulator() as api, kmock.Server(api, host=host_ip) as server:
        api.enforce_rbac(chart_authorizer())  # the operator and the registrars as the chart's ServiceAccounts
        url = f"http://{host_ip}:{server.port}"
        settings = {"PROBE_INTERVAL": str(PROBE_INTERVAL), "PROBE_TIMEOUT": "0.5", "AUTOSCALE_INTERVAL": "0.5",
                    "LIVENESS_PORT": str(free_port())}  # fmt: skip
        minis: list[MacMini] = []
        async with running_operator(url, tmp_path, settings) as (kubeconfig_for, log):

            def start(model: str | None, name: str) -> MacMini:
                mini = MacMini(ns, peer_ip, kubeconfig_for(name), tmp_path / f"{name}-{len(minis)}.log", model, name)
                minis.append(mini)
                return mini

            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                try:
                    yield Cluster(api, client, log), start
                finally:
                    for mini in minis:
                        await mini.stop(signal.SIGKILL)
        assert api.denied == [], "\n".join(d.message for d in api.denied)


def slice_endpoints(cluster: Cluster, service: str) -> dict[str, bool]:
    """address -> ready, over every slice of ``service``."""
    out = {}
    for item in cluster.api.live(SLICES, "search").values():
        if item["metadata"]["labels"].get("kubernetes.io/service-name") == service:
            for endpoint in item["endpoints"]:
                out[endpoint["addresses"][0]] = endpoint["conditions"]["ready"]
    return out


def endpoint_ready(cluster: Cluster, name: str) -> dict[str, Any]:
    item = cluster.api.live("reranker.dev/v1alpha1/rerankerendpoints", "search").get(name) or {}
    return next((c for c in (item.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


async def test_register_probe_drop_rejoin_withdraw(
    fleet: tuple[Cluster, Any], test_host: tuple[str, str, str], minilm_cross_dir: Path
) -> None:
    cluster, start = fleet
    address = test_host[2]
    await cluster.apply("fleet", {"model": {"name": str(minilm_cross_dir)}, "replicas": {"min": 1, "max": 2}})
    await cluster.eventually(lambda: cluster.children("fleet")["apps/v1/deployments"])

    mini = start(str(minilm_cross_dir), "mini-1")
    await mini.ready()
    await cluster.eventually(lambda: slice_endpoints(cluster, "fleet").get(address) is True, within=30)
    await cluster.eventually(lambda: slice_endpoints(cluster, "fleet-external") == {address: True})
    assert cluster.api.live("coordination.k8s.io/v1/leases", "search").get("reranker-endpoint-mini-1")
    assert cluster.api.live("v1/services", "search").get("fleet-external")
    endpoint = cluster.api.live("reranker.dev/v1alpha1/rerankerendpoints", "search")["mini-1"]
    assert endpoint["status"]["backend"] == "onnxruntime" and endpoint["status"]["latencyMs"] > 0  # a CPU here
    await cluster.eventually(
        lambda: cluster.reranker("fleet")["status"].get("externalEndpoints") == {"ready": 1, "total": 1}
    )
    for item in cluster.api.live(SLICES, "search").values():
        validate_builtin({k: v for k, v in item.items() if k != "status"})

    # killed (no withdrawal): out of rotation within two probe intervals
    await mini.stop(signal.SIGKILL)
    killed = time.monotonic()
    await cluster.eventually(lambda: slice_endpoints(cluster, "fleet").get(address) is False, within=10)
    dropped_after = time.monotonic() - killed
    print(f"dropped out {dropped_after:.2f}s after the kill (probe interval {PROBE_INTERVAL}s)")
    assert dropped_after <= 2 * PROBE_INTERVAL + 1.0  # + scheduling slack for the timer and the watch
    # its Lease then runs out: it is gone, not just failing
    await cluster.eventually(lambda: endpoint_ready(cluster, "mini-1").get("reason") == "LeaseExpired", within=15)
    await cluster.eventually(lambda: address not in slice_endpoints(cluster, "fleet"))

    # restarted: it registers again and rejoins
    mini = start(str(minilm_cross_dir), "mini-1")
    await mini.ready()
    await cluster.eventually(lambda: slice_endpoints(cluster, "fleet").get(address) is True, within=30)

    # stopped gracefully: it withdraws its endpoint and Lease, and the slices follow
    await mini.stop(signal.SIGTERM)
    await cluster.eventually(
        lambda: not cluster.api.live("reranker.dev/v1alpha1/rerankerendpoints", "search").get("mini-1")
    )
    assert not cluster.api.live("coordination.k8s.io/v1/leases", "search").get("reranker-endpoint-mini-1")
    await cluster.eventually(lambda: address not in slice_endpoints(cluster, "fleet"))
    await cluster.eventually(lambda: not cluster.api.live("v1/services", "search").get("fleet-external"))


async def test_a_server_with_another_model_is_refused(
    fleet: tuple[Cluster, Any], test_host: tuple[str, str, str], minilm_cross_dir: Path
) -> None:
    cluster, start = fleet
    await cluster.apply("fleet", {"model": {"name": str(minilm_cross_dir)}})
    await cluster.eventually(lambda: cluster.children("fleet")["apps/v1/deployments"])
    wrong = start(None, "mini-2")  # the embedded all-MiniLM-L6-v2, not the Reranker's model
    await wrong.ready()
    # (probes fail while it loads, then it answers healthy with another model)
    ready = await cluster.eventually(
        lambda: (c := endpoint_ready(cluster, "mini-2")).get("reason") == "ModelMismatch" and c
    )
    assert ready["status"] == "False"
    assert "all-MiniLM-L6-v2" in ready["message"] and str(minilm_cross_dir) in ready["message"]
    await asyncio.sleep(2 * PROBE_INTERVAL)
    assert test_host[2] not in slice_endpoints(cluster, "fleet")
    assert cluster.reranker("fleet")["status"]["externalEndpoints"] == {"ready": 0, "total": 1}


async def test_static_registration_with_a_loopback_address_is_refused(fleet: tuple[Cluster, Any]) -> None:
    cluster, _ = fleet
    await cluster.apply("fleet", {"model": {"name": "m"}})
    response = await cluster.client.post(
        "/apis/reranker.dev/v1alpha1/namespaces/search/rerankerendpoints",
        json={
            "apiVersion": "reranker.dev/v1alpha1",
            "kind": "RerankerEndpoint",
            "metadata": {"name": "local"},
            "spec": {"rerankerRef": {"name": "fleet"}, "address": "127.0.0.1", "port": 8000},
        },
    )
    assert response.status_code < 300
    ready = await cluster.eventually(lambda: endpoint_ready(cluster, "local"))
    assert (ready["status"], ready["reason"]) == ("False", "InvalidAddress")
    assert "loopback" in ready["message"]
    assert slice_endpoints(cluster, "fleet") == {}


async def test_macs_in_rotation_count_as_replicas_for_the_operator_autoscaler(
    fleet: tuple[Cluster, Any], test_host: tuple[str, str, str], minilm_cross_dir: Path, xlmr_cross_dir: Path,
    start_server: Any,
) -> None:  # fmt: skip
    """Load needs 3 replicas: 3 pods; a Mac joins: 2 pods (after the down window); it dies: 3 again."""
    cluster, start = fleet
    busy = start_server({"MODEL_NAME": str(minilm_cross_dir), "MAX_PARALLEL_REQUESTS": "4"})
    idle = [start_server({"MODEL_NAME": str(xlmr_cross_dir)}) for _ in range(2)]
    fast = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]}
    scaling = {"targetInProgressRequests": 3, "windowSeconds": 2,
               "behavior": {"scaleUp": fast, "scaleDown": fast | {"stabilizationWindowSeconds": 4}}}  # fmt: skip
    await cluster.apply(
        "fleet", {"model": {"name": str(minilm_cross_dir)}, "replicas": {"min": 1, "max": 3}, "autoscaling": scaling}
    )
    backends = [("127.0.0.1", s.port) for s in (busy, *idle)]
    async with PodController(cluster, "fleet", backends).running() as pods, load(busy.url, concurrency=8):
        await cluster.eventually(lambda: pods.replicas() == 3, within=30)
        mini = start(str(minilm_cross_dir), "mini-1")
        await mini.ready()
        await cluster.eventually(lambda: slice_endpoints(cluster, "fleet").get(test_host[2]) is True, within=30)
        await cluster.eventually(lambda: pods.replicas() == 2, within=30)
        # the status follows the scale (and its Event) right after it
        await cluster.eventually(
            lambda: cluster.reranker("fleet")["status"]["autoscaling"]["lastScale"]["reason"].endswith(
                "1 external endpoint ready"
            )
        )
        await mini.stop(signal.SIGKILL)  # out of rotation: the pods take its share again
        await cluster.eventually(lambda: pods.replicas() == 3, within=30)
    print(f"replicas over the test: {pods.history}")


async def test_the_fleet_size_reaches_the_pods_configmap_and_the_registered_macs(
    fleet: tuple[Cluster, Any], minilm_cross_dir: Path
) -> None:
    """Rate limits: the servers divide them by the fleet's size while Redis is away; the operator
    writes it into <name>-fleet (pods) and each endpoint's status (Macs, read at Lease renewal)."""
    cluster, start = fleet
    limits = {"requestsPerSecond": 5, "pairsPerSecond": 500, "pairBurst": 1000}
    await cluster.apply("fleet", {"model": {"name": str(minilm_cross_dir)}, "rateLimits": limits})
    deployment = await cluster.eventually(lambda: cluster.children("fleet")["apps/v1/deployments"])
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["RATE_LIMIT_REQUESTS_PER_SECOND"], env["RATE_LIMIT_PAIR_BURST"]) == ("5", "1000")
    assert env["RATE_LIMIT_SCOPE"] == "search/fleet" and env["FLEET_SIZE_FILE"] == "/etc/reranker/fleet/size"
    assert {"name": "fleet", "configMap": {"name": "fleet-fleet", "optional": True}} in pod["volumes"]

    def size() -> str | None:
        return ((cluster.api.live("v1/configmaps", "search").get("fleet-fleet") or {}).get("data") or {}).get("size")

    await cluster.eventually(lambda: size() == "1")  # nothing ready yet: never below one
    response = await cluster.client.patch(
        "/apis/apps/v1/namespaces/search/deployments/fleet/status",
        json={"status": {"replicas": 2, "readyReplicas": 2}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code < 300, response.text
    await cluster.eventually(lambda: size() == "2")

    mini = start(str(minilm_cross_dir), "mini-1")
    await mini.ready()
    joined = time.monotonic()
    await cluster.eventually(lambda: size() == "3", within=30)
    await cluster.eventually(lambda: cluster.reranker("fleet")["status"].get("fleetSize") == 3)
    endpoints = "reranker.dev/v1alpha1/rerankerendpoints"
    await cluster.eventually(lambda: cluster.api.live(endpoints, "search")["mini-1"]["status"].get("fleetSize") == 3)
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            health = (await client.get(f"{mini.url}/health", timeout=2)).json()
            if health["rate_limits"]["fleet_size"] == 3:
                break
            await asyncio.sleep(0.1)
    assert health["rate_limits"]["fleet_size"] == 3, health
    assert health["rate_limits"]["enforced"] == "local-share"
    print(f"the Mac divided by 3 {time.monotonic() - joined:.1f}s after it was ready (probe + Lease renewal)")
