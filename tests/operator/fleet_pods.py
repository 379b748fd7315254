"""Real server processes standing in for a Reranker's pods in the emulated cluster, and real load.

``PodController`` plays the ReplicaSet controller and the kubelet: it keeps one Ready Pod object
per Deployment replica, each pointing (podIP, container port ``http``) at a real
``reranker-server`` on loopback, so the operator's autoscaler scrapes real ``/metrics``.
``Load`` keeps N concurrent rerank requests in flight against one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.operator.conftest import Cluster

DEPLOYMENTS = "apps/v1/deployments"
DOCUMENTS = [f"passage {i} about rerankers, batching and scaling a fleet of model servers " * 4 for i in range(16)]


def pod_manifest(reranker: str, index: int, address: str, port: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "reranker", "app.kubernetes.io/instance": reranker,
              "app.kubernetes.io/component": "server", "app.kubernetes.io/managed-by": "reranker-operator"}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{reranker}-7d9f8c6b5-pod{index}", "labels": labels},
        "spec": {
            "containers": [{"name": "server", "image": "img", "ports": [{"name": "http", "containerPort": port}]}]
        },
        "status": {"podIP": address, "conditions": [{"type": "Ready", "status": "True"}]},
    }


@dataclass
class PodController:
    cluster: Cluster
    reranker: str
    backends: list[tuple[str, int]]  # (address, port) of pod i's server
    pods: int = 0
    history: list[int] = field(default_factory=list)  # replica counts seen, in order

    def replicas(self) -> int:
        deployment = self.cluster.api.live(DEPLOYMENTS, "search").get(self.reranker) or {}
        return int((deployment.get("spec") or {}).get("replicas") or 0)

    async def sync(self) -> None:
        wanted = min(self.replicas(), len(self.backends))
        if not self.history or self.history[-1] != self.replicas():
            self.history.append(self.replicas())
        while self.pods < wanted:
            address, port = self.backends[self.pods]
            body = pod_manifest(self.reranker, self.pods, address, port)
            response = await self.cluster.client.post("/api/v1/namespaces/search/pods", json=body)
            assert response.status_code < 300, response.text
            self.pods += 1
        while self.pods > wanted:
            self.pods -= 1
            name = f"{self.reranker}-7d9f8c6b5-pod{self.pods}"
            await self.cluster.client.delete(f"/api/v1/namespaces/search/pods/{name}")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PodController]:
        async def loop() -> None:
            while True:
                await self.sync()
                await asyncio.sleep(0.2)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def load(url: str, concurrency: int) -> AsyncIterator[None]:
    """``concurrency`` clients, each sending its next request when the last one is answered."""

    async def client(http: httpx.AsyncClient) -> None:
        while True:  # a new query each time: the server's score cache never answers
            body = {"query": f"how do fleets scale? ({uuid.uuid4()})", "documents": DOCUMENTS}
            response = await http.post(f"{url}/v1/rerank", json=body)
            assert response.status_code == 200, response.text

    async with httpx.AsyncClient(timeout=60) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(concurrency)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
