"""Fixtures for the operator tests: the real operator process against the emulated API server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from tests.operator.emulator import ApiServerEmulator, running_operator
from tests.operator.rbac import chart_authorizer
from tests.processes import free_port

RERANKERS = "/apis/reranker.dev/v1alpha1/namespaces/search/rerankers"
DEPLOYMENTS, SERVICES = "apps/v1/deployments", "v1/services"
HPAS, PDBS = "autoscaling/v2/horizontalpodautoscalers", "policy/v1/poddisruptionbudgets"


class Cluster:
    def __init__(self, api: ApiServerEmulator, client: httpx.AsyncClient, log: Path) -> None:
        self.api = api
        self.client = client
        self.log = log

    def children(self, name: str) -> dict[str, dict[str, Any] | None]:
        return {kind: self.api.live(kind, "search").get(name) for kind in (DEPLOYMENTS, SERVICES, HPAS, PDBS)}

    def reranker(self, name: str) -> dict[str, Any] | None:
        return self.api.live("reranker.dev/v1alpha1/rerankers", "search").get(name)

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        conds = ((self.reranker(name) or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == kind), {})

    async def eventually(self, check: Callable[[], Any], within: float = 20.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; operator log tail:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    async def apply(self, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": "reranker.dev/v1alpha1", "kind": "Reranker", "metadata": {"name": name}, "spec": spec}
        if self.reranker(name) is None:
            response = await self.client.post(RERANKERS, json=body)
        else:
            response = await self.client.patch(
                f"{RERANKERS}/{name}", json={"spec": spec}, headers={"Content-Type": "application/merge-patch+json"}
            )
        assert response.status_code < 300, response.text


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with ApiServerEmulator() as api, kmock.Server(api) as server:
        api.enforce_rbac(chart_authorizer())
        url = str(server.url).rstrip("/")
        settings = {"DRIFT_INTERVAL": "1", "CACHE_POLL_INTERVAL": "0.5", "AUTOSCALE_INTERVAL": "0.5",
                    "LIVENESS_PORT": str(free_port())}  # fmt: skip
        async with (
            running_operator(url, tmp_path, settings) as (_, log),
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield Cluster(api, client, log)
        # under the chart's own ServiceAccount, nothing the operator (or kopf) asked for was refused
        assert api.denied == [], "\n".join(d.message for d in api.denied)
