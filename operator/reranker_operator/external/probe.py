"""Probing an external endpoint's /health over HTTP (not the Kubernetes API)."""

from __future__ import annotations

import ssl
import time

import httpx

from reranker_contract.health import HEALTH_PATH, HealthReport
from reranker_operator.external.endpoints import ProbeResult


def url(scheme: str, address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address  # IPv6 literals need brackets
    return f"{scheme}://{host}:{port}{path}"


def health_url(scheme: str, address: str, port: int) -> str:
    return url(scheme, address, port, HEALTH_PATH)


async def probe(client: httpx.AsyncClient, url: str, limit_seconds: float, ca_bundle: str | None = None) -> ProbeResult:
    """GET /health; an https endpoint's certificate is checked against ``ca_bundle`` when it gave one."""
    started = time.perf_counter()
    try:
        if ca_bundle:
            context = ssl.create_default_context(cadata=ca_bundle)
            async with httpx.AsyncClient(verify=context) as pinned:
                response = await pinned.get(url, timeout=limit_seconds)
        else:
            response = await client.get(url, timeout=limit_seconds)
    except (httpx.HTTPError, ssl.SSLError) as exc:
        return ProbeResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    latency = (time.perf_counter() - started) * 1000
    try:
        report = HealthReport.from_body(response.json())
    except ValueError:
        return ProbeResult(ok=False, latency_ms=latency, error=f"HTTP {response.status_code}: not JSON")
    healthy = response.status_code == 200 and report.healthy
    return ProbeResult(
        ok=healthy,
        latency_ms=latency,
        model=report.model,
        revision=report.revision,
        backend=report.backend,
        device=report.device,
        error=None if healthy else f"HTTP {response.status_code}, status {report.status!r}",
    )
