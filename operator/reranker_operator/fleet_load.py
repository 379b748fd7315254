"""Reading the fleet's load: each ready pod's and each ready external endpoint's ``/metrics``.

The ``operator`` autoscaling engine needs nothing installed in the cluster (no metrics-server,
no Prometheus, no adapter): it asks the servers themselves, as KubeAI's autoscaler does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from reranker_contract.endpoint import EndpointSpec

from . import endpoints, probe
from .autoscaler import Sample
from .resources import LOAD_METRICS

METRICS_PATH = "/metrics"


def parse_load(text: str) -> float:
    """requests in progress + queued, from Prometheus' text format (summed over label sets)."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in LOAD_METRICS:
            total += float(line.rsplit(" ", 1)[-1] if "}" not in line else line.rsplit("}", 1)[1].split()[0])
    return total


@dataclass(frozen=True)
class Target:
    url: str
    ca_bundle: str | None = None
    # a pod serving HTTPS has the user's certificate, issued for the Service's name, not the pod
    # IP; metrics carry nothing secret and nothing is sent, so pods are read without verifying it
    verify: bool = True


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return ready and bool(status.get("podIP")) and not (pod.get("metadata") or {}).get("deletionTimestamp")


def _port(pod: dict[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return 8000


def pod_targets(pods: Iterable[dict[str, Any]], scheme: str) -> list[Target]:
    return [
        Target(probe.url(scheme, p["status"]["podIP"], _port(p), METRICS_PATH), verify=False) for p in pods if _ready(p)
    ]


def endpoint_targets(registered: Iterable[dict[str, Any]]) -> list[Target]:
    """External endpoints in rotation (probed ready, not refused)."""
    targets = []
    for endpoint in registered:
        if endpoints.rotation(endpoint) != (True, True):
            continue
        spec = EndpointSpec.from_manifest(endpoint)
        targets.append(Target(probe.url(spec.scheme, spec.address, spec.port, METRICS_PATH), spec.ca_bundle))
    return targets


async def scrape(client: httpx.AsyncClient, target: Target, limit_seconds: float) -> float | None:
    """The target's load, or None when it can't be read (which blocks scaling down)."""
    try:
        if target.ca_bundle or (not target.verify and target.url.startswith("https:")):
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cadata=target.ca_bundle) if target.ca_bundle else False
            )
            async with httpx.AsyncClient(verify=verify) as own:
                response = await own.get(target.url, timeout=limit_seconds)
        else:
            response = await client.get(target.url, timeout=limit_seconds)
        if response.status_code != 200:
            return None
        return parse_load(response.text)
    except (httpx.HTTPError, ssl.SSLError, ValueError):
        return None


async def sample(
    client: httpx.AsyncClient, pods: list[Target], externals: list[Target], replicas: int, limit_seconds: float
) -> tuple[Sample, list[str]]:
    """One scrape of everything, concurrently; returns the sample and the URLs that failed."""
    loads = await asyncio.gather(*(scrape(client, t, limit_seconds) for t in [*pods, *externals]))
    failed = [t.url for t, load in zip([*pods, *externals], loads, strict=True) if load is None]
    complete = not failed and len(pods) >= replicas  # every replica ready and read
    return Sample(sum(x for x in loads if x is not None), complete, len(externals)), failed
