"""A registering machine's token, under the chart's Role, can apply and withdraw its own
RerankerEndpoint and Lease and nothing else (the emulator enforces RBAC as the API server does)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import kmock
import pytest

from reranker_contract.endpoint import EndpointSpec, lease_manifest
from tests.operator.emulator import ApiServerEmulator
from tests.operator.rbac import chart_authorizer, registrar_token

pytestmark = pytest.mark.helm
ENDPOINTS = "/apis/reranker.dev/v1alpha1/namespaces/search/rerankerendpoints"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/search/leases"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


@pytest.fixture
async def api() -> AsyncIterator[tuple[ApiServerEmulator, str]]:
    async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.enforce_rbac(chart_authorizer())
        yield emulator, str(server.url).rstrip("/")


def endpoint(name: str) -> bytes:
    return json.dumps(EndpointSpec(reranker="fleet", address="10.0.0.5").manifest(name, "search")).encode()


def lease(name: str) -> bytes:
    import datetime

    return json.dumps(lease_manifest(name, "search", "mac", 30, datetime.datetime.now(datetime.UTC))).encode()


async def test_a_registrar_touches_only_its_own_endpoint_and_lease(api: tuple[ApiServerEmulator, str]) -> None:
    emulator, url = api
    params = {"fieldManager": "reranker-server", "force": "true"}
    async with (
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {registrar_token('mini-1')}"}) as mine,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {registrar_token('mini-2')}"}) as other,
        httpx.AsyncClient(base_url=url) as admin,
    ):
        # its own: apply (creates), renew, withdraw
        own = ((f"{ENDPOINTS}/mini-1", endpoint("mini-1")),
               (f"{LEASES}/reranker-endpoint-mini-1", lease("reranker-endpoint-mini-1")))  # fmt: skip
        for path, body in own:
            assert (await mine.patch(path, params=params, headers=APPLY, content=body)).status_code == 201
            assert (await mine.patch(path, params=params, headers=APPLY, content=body)).status_code == 200
        assert emulator.denied == []
        # another machine's endpoint and Lease: refused, as is anyone else's Lease
        for path, body in own:
            assert (await other.patch(path, params=params, headers=APPLY, content=body)).status_code == 403
            assert (await other.delete(path)).status_code == 403
        await admin.post("/apis/coordination.k8s.io/v1/namespaces/search/leases",
                         json={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": "kube-scheduler"}, "spec": {}})  # fmt: skip
        response = await mine.patch(f"{LEASES}/kube-scheduler", params=params, headers=APPLY,
                                    content=lease("kube-scheduler"))  # fmt: skip
        assert response.status_code == 403 and response.json()["reason"] == "Forbidden"
        assert (await mine.delete(f"{LEASES}/kube-scheduler")).status_code == 403
        # and reads nothing (it never needs to)
        assert (await mine.get(ENDPOINTS)).status_code == 403
        refused = {(d.user.rsplit(":", 1)[-1], d.verb, d.resource, d.name) for d in emulator.denied}
        assert ("rel-reranker-registrar-mini-2", "patch", "rerankerendpoints", "mini-1") in refused
        assert ("rel-reranker-registrar-mini-1", "delete", "leases", "kube-scheduler") in refused
        # its own, withdrawn
        assert (await mine.delete(f"{ENDPOINTS}/mini-1")).status_code == 200
        assert (await mine.delete(f"{LEASES}/reranker-endpoint-mini-1")).status_code == 200
