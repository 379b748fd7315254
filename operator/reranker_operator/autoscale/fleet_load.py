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
from reranker_operator.autoscale.decision import Sample
from reranker_operator.builders.scaling import LOAD_METRICS
from reranker_operator.external import endpoints, probe

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
    name: str = ""  # the pod's or the RerankerEndpoint's
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
    targets = []
    for pod in pods:
        if _ready(pod):
            url = probe.url(scheme, pod["status"]["podIP"], _port(pod), METRICS_PATH)
            targets.append(Target(url, (pod.get("metadata") or {}).get("name", ""), verify=False))
    return targets


def endpoint_targets(registered: Iterable[dict[str, Any]]) -> list[Target]:
    """External endpoints in rotation (probed ready, not refused)."""
    targets = []
    for endpoint in registered:
        if endpoints.rotation(endpoint) != (True, True):
            continue
        spec = EndpointSpec.from_manifest(endpoint)
        url = probe.url(spec.scheme, spec.address, spec.port, METRICS_PATH)
        targets.append(Target(url, (endpoint.get("metadata") or {}).get("name", ""), spec.ca_bundle))
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
) -> tuple[Sample, dict[Target, float | None]]:
    """One scrape of everything, concurrently; returns the sample and each target's load (None: failed)."""
    targets = [*pods, *externals]
    loads = dict(zip(targets, await asyncio.gather(*(scrape(client, t, limit_seconds) for t in targets)), strict=True))
    complete = None not in loads.values() and len(pods) >= replicas  # every replica ready and read
    return Sample(sum(x for x in loads.values() if x is not None), complete, len(externals)), loads
