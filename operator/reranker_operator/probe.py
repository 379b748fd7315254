"""Probing an external endpoint's /health over HTTP (not the Kubernetes API)."""

from __future__ import annotations

import time

import httpx

from .endpoints import ProbeResult


def health_url(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address  # IPv6 literals need brackets
    return f"{scheme}://{host}:{port}/health"


async def probe(client: httpx.AsyncClient, url: str, limit_seconds: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        response = await client.get(url, timeout=limit_seconds)
    except httpx.HTTPError as exc:
        return ProbeResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    latency = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
        model = body.get("model") or {}
    except (ValueError, AttributeError):
        return ProbeResult(ok=False, latency_ms=latency, error=f"HTTP {response.status_code}: not JSON")
    healthy = response.status_code == 200 and body.get("status") == "healthy"
    return ProbeResult(
        ok=healthy,
        latency_ms=latency,
        model=model.get("name"),
        revision=model.get("revision"),
        backend=model.get("backend"),
        device=model.get("device"),
        error=None if healthy else f"HTTP {response.status_code}, status {body.get('status')!r}",
    )
