"""Self-registration: this server joins a Reranker's fleet as a RerankerEndpoint.

On start it applies its RerankerEndpoint and a ``coordination.k8s.io`` Lease (the heartbeat the
operator checks), renews the Lease every third of its duration, and on shutdown withdraws both.
At each renewal it reads the fleet's size from its endpoint's status (the operator writes it
there), so its share of the rate limits follows the fleet.
Credentials come from the usual places: in-cluster service account, else KUBECONFIG/~/.kube.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
import socket
from typing import Any

import httpx

from reranker_contract.api import ENDPOINT_PLURAL, GROUP, VERSION
from reranker_contract.endpoint import EndpointSpec, lease_manifest, lease_name
from reranker_server.core.settings import Settings
from reranker_server.serving.fleet_size import FleetSize

logger = logging.getLogger(__name__)
FIELD_MANAGER = "reranker-server"
ENDPOINTS = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{ENDPOINT_PLURAL}"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
# What a registrar needs (the chart's per-machine Role is tested against this): server-side apply
# that may create (create; patch on its own name), withdrawal (delete, its own name), and reading
# its endpoint's status (get, its own name).
REQUIRED_PERMISSIONS = {
    ("reranker.dev", "rerankerendpoints"): {"create", "get", "patch", "delete"},
    ("coordination.k8s.io", "leases"): {"create", "patch", "delete"},
}
OWN_NAME_ONLY = {"get", "patch", "delete"}  # limited by resourceNames to the machine's endpoint and Lease


def split_address(advertise: str) -> tuple[str, int]:
    """'10.0.0.5:8000', 'mac-mini-1.lan:8000' or '[fd00::5]:8000' -> (host, port)."""
    match = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<port>\d+)|(?P<host>[^:\[\]]+):(?P<port2>\d+)", advertise)
    if not match:
        raise ValueError(f"ADVERTISE_ADDRESS must be HOST:PORT, got {advertise!r}")
    host = match.group("v6") or match.group("host")
    return host, int(match.group("port") or match.group("port2"))


def default_endpoint_name(reranker: str) -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-") or "server"
    return f"{reranker}-{host}"[:63].rstrip("-")


class Registrar:
    def __init__(
        self, settings: Settings, client: httpx.AsyncClient, capacity: int, fleet: FleetSize | None = None
    ) -> None:
        assert settings.reranker and settings.advertise_address
        self.settings = settings
        self.client = client
        self.namespace = settings.namespace
        self.name = settings.endpoint_name or default_endpoint_name(settings.reranker)
        self.lease_name = lease_name(self.name)
        self.address, self.port = split_address(settings.advertise_address)
        self.capacity = capacity
        self.fleet = fleet
        self._renewer: asyncio.Task[None] | None = None

    def endpoint(self) -> dict[str, Any]:
        assert self.settings.reranker
        spec = EndpointSpec(
            reranker=self.settings.reranker,
            address=self.address,
            port=self.port,
            scheme="https" if self.settings.tls_cert_file else "http",
            # the operator verifies this server's certificate against the one it registers
            ca_bundle=self.settings.tls_cert_file.read_text() if self.settings.tls_cert_file else None,
            capacity=self.capacity,
            lease_name=self.lease_name,
        )
        return spec.manifest(self.name, self.namespace)

    def lease(self) -> dict[str, Any]:
        holder = f"{socket.gethostname()}/{self.address}:{self.port}"
        now = datetime.datetime.now(datetime.UTC)
        return lease_manifest(self.lease_name, self.namespace, holder, self.settings.lease_seconds, now)

    async def _apply(self, collection: str, manifest: dict[str, Any]) -> None:
        response = await self.client.patch(
            f"{collection.format(ns=self.namespace)}/{manifest['metadata']['name']}",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(manifest).encode(),
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"registering {manifest['kind']} {manifest['metadata']['name']}: HTTP {response.status_code} "
                f"{response.text}"
            )

    async def start(self) -> None:
        await self._apply(LEASES, self.lease())
        await self._apply(ENDPOINTS, self.endpoint())
        self._renewer = asyncio.get_running_loop().create_task(self._renew(), name="lease-renewer")
        logger.info("registered %s/%s at %s:%d for Reranker %s", self.namespace, self.name, self.address,
                    self.port, self.settings.reranker)  # fmt: skip

    async def _renew(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._apply(LEASES, self.lease())
            except (httpx.HTTPError, RuntimeError) as exc:  # keep trying: the Lease has slack
                logger.warning("lease renewal failed: %s", exc)
            await self.read_fleet_size()

    async def read_fleet_size(self) -> None:
        """The fleet's size as the operator last wrote it on this endpoint's status."""
        if self.fleet is None:
            return
        try:
            response = await self.client.get(f"{ENDPOINTS.format(ns=self.namespace)}/{self.name}")
            size = (response.json().get("status") or {}).get("fleetSize") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:  # the last size stands until the next renewal
            logger.warning("reading the fleet size failed: %s", exc)
            return
        if isinstance(size, int):
            self.fleet.set(size)

    async def stop(self) -> None:
        """Withdraw: the endpoint leaves the fleet now, not when its Lease runs out."""
        if self._renewer:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for collection, name in ((ENDPOINTS, self.name), (LEASES, self.lease_name)):
            try:
                await self.client.delete(f"{collection.format(ns=self.namespace)}/{name}")
            except httpx.HTTPError as exc:
                logger.warning("withdrawing %s failed: %s", self.name, exc)
        logger.info("withdrew %s/%s", self.namespace, self.name)
