"""Operator configuration, from the environment (the chart sets these)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reranker_operator.models import RateLimits


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    reranker_image: str | None = Field(None, description="Server image for Rerankers that name none.")
    watch_namespace: str | None = Field(None, description="Watch only this namespace; unset: all namespaces.")
    field_manager: str = Field("reranker-operator", description="Server-side apply field manager.")
    drift_interval: float = Field(60.0, gt=0, description="Seconds between drift checks of each Reranker.")
    default_hub_endpoint: str | None = Field(
        None, description="Hub mirror (HF_ENDPOINT) for Rerankers whose spec.model names no hubEndpoint."
    )
    default_redis_url: str | None = Field(
        None, description="Shared score cache for Rerankers without spec.cache.redis (distributed mode)."
    )
    default_rate_limits: RateLimits | None = Field(
        None, description="Per-API-key limits (JSON, the spec's rateLimits shape) for Rerankers that set none."
    )
    cache_poll_interval: float = Field(
        10.0, gt=0, description="Seconds between reads of a model loader's progress while it runs."
    )
    autoscale_interval: float = Field(
        5.0, gt=0, description="Seconds between load scrapes of a Reranker (the operator autoscaling engine)."
    )
    scrape_timeout: float = Field(2.0, gt=0, description="Seconds a pod's /metrics may take.")
    keda_prometheus_address: str | None = Field(
        None, description="Prometheus for KEDA ScaledObjects whose Reranker names no serverAddress."
    )
    probe_interval: float = Field(10.0, gt=0, description="Seconds between /health probes of each external endpoint.")
    probe_timeout: float = Field(2.0, gt=0, description="Seconds a probe may take.")
    failures_to_drop: int = Field(2, ge=1, description="Failed probes in a row that take an endpoint out.")
    successes_to_rejoin: int = Field(2, ge=1, description="Good probes in a row that bring it back.")
    operator_namespace: str | None = Field(
        None, description="Where the operator runs: Rerankers' NetworkPolicies admit it (the chart sets it)."
    )
    metrics_port: int = Field(
        8081, ge=0, le=65535, description="Port of the operator's Prometheus /metrics (0: not served)."
    )
    liveness_port: int = Field(8080, ge=1, le=65535, description="Port of the /healthz liveness endpoint.")
