"""The RerankerEndpoint a registering server applies and the operator reads, and its Lease.

``EndpointSpec`` is both sides' view of ``spec``: the registrar writes ``manifest()``, the
operator reads ``from_manifest()``, so a field renamed on one side is renamed on both.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from .api import API_VERSION, ENDPOINT_KIND

DEFAULT_PORT = 8000
# A registering server's Lease is its endpoint's name behind this prefix: the chart's per-machine
# Role names exactly that Lease, so a registrar can never renew or delete anyone else's.
LEASE_PREFIX = "reranker-endpoint-"


def lease_name(endpoint_name: str) -> str:
    return f"{LEASE_PREFIX}{endpoint_name}"


@dataclass(frozen=True)
class EndpointSpec:
    reranker: str  # spec.rerankerRef.name: the Reranker (same namespace) whose Service it joins
    address: str  # IP or DNS name the cluster reaches the server at
    port: int = DEFAULT_PORT
    scheme: str = "http"
    hardware_class: str = "apple-silicon"
    capacity: int | None = None  # requests it serves at once
    lease_name: str | None = None  # heartbeat Lease; None: probes alone decide
    ca_bundle: str | None = None  # PEM the operator trusts when probing https (a registrar sends its own cert)

    @classmethod
    def from_manifest(cls, endpoint: dict[str, Any]) -> EndpointSpec:
        spec = endpoint.get("spec") or {}
        capacity = spec.get("capacity")
        return cls(
            reranker=str((spec.get("rerankerRef") or {}).get("name") or ""),
            address=str(spec.get("address") or ""),
            port=int(spec.get("port") or DEFAULT_PORT),
            scheme=str(spec.get("scheme") or "http"),
            hardware_class=str(spec.get("hardwareClass") or "apple-silicon"),
            capacity=int(capacity) if capacity is not None else None,
            lease_name=spec.get("leaseName") or None,
            ca_bundle=spec.get("caBundle") or None,
        )

    def manifest(self, name: str, namespace: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "rerankerRef": {"name": self.reranker},
            "address": self.address,
            "port": self.port,
            "scheme": self.scheme,
            "hardwareClass": self.hardware_class,
        }
        if self.capacity is not None:
            spec["capacity"] = self.capacity
        if self.lease_name:
            spec["leaseName"] = self.lease_name
        if self.ca_bundle:
            spec["caBundle"] = self.ca_bundle
        return {
            "apiVersion": API_VERSION,
            "kind": ENDPOINT_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }


def lease_manifest(
    name: str, namespace: str, holder: str, duration_seconds: int, renewed: datetime.datetime
) -> dict[str, Any]:
    """The heartbeat a registered server renews; the operator drops the endpoint when it lapses."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def lease_expired(lease: dict[str, Any] | None, now: datetime.datetime) -> bool:
    """No Lease, or not renewed within its duration."""
    if lease is None:
        return True
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    renewed_at = datetime.datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    return now > renewed_at + datetime.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
