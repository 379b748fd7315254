"""A typed model of the ``Reranker`` resource's spec (``reranker.dev/v1alpha1``).

The CRD's schema rejects most bad input at admission; this model re-checks what the operator
relies on, because an API server without the schema (or an older one without CEL) lets it in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reranker_contract.api import API_VERSION, GROUP, RERANKER_KIND, RERANKER_PLURAL, VERSION

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "RerankerSpec"]
PLURAL = RERANKER_PLURAL
KIND = RERANKER_KIND

HardwareClass = Literal["cpu", "nvidia-gpu"]


def _alias(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _CamelModel(BaseModel):
    """Python snake_case fields, Kubernetes camelCase keys; unknown keys are errors."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, alias_generator=_alias)


class SecretKeyRef(_CamelModel):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


AccessMode = Literal["ReadOnlyMany", "ReadWriteOnce"]


class PvcCache(_CamelModel):
    """A PersistentVolumeClaim the loader Job fills once and every server pod mounts read-only."""

    size: str | None = None
    storage_class_name: str | None = None
    access_mode: AccessMode | None = None  # unset: decided from the storage class's provisioner
    create: bool = True
    existing_claim: str | None = None

    @model_validator(mode="after")
    def _sized(self) -> PvcCache:
        if self.existing_claim is None and not self.create:
            raise ValueError("model.cache.pvc: create is false, so existingClaim must name the claim to use")
        if self.existing_claim is None and not self.size:
            raise ValueError("model.cache.pvc.size: required when the operator creates the claim")
        return self


class ModelCache(_CamelModel):
    pvc: PvcCache


class ModelRef(_CamelModel):
    name: str = Field(min_length=1)
    revision: str | None = None
    cache: ModelCache | None = None
    token_secret_ref: SecretKeyRef | None = None  # HF_TOKEN for gated models (the loader only)
    # HF_ENDPOINT: a hub mirror the loader (or, without a cache, the pods) fetches from
    hub_endpoint: str | None = Field(None, pattern=r"^https?://\S+$")


def with_hub_endpoint(spec: RerankerSpec, default: str | None) -> RerankerSpec:
    """The spec with the operator's hub mirror where the Reranker names none."""
    if spec.model.hub_endpoint or not default:
        return spec
    return spec.model_copy(update={"model": spec.model.model_copy(update={"hub_endpoint": default})})


class Replicas(_CamelModel):
    min: int = Field(1, ge=1)
    max: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        return self


class KedaSpec(_CamelModel):
    server_address: str | None = Field(None, min_length=1)  # Prometheus; unset: the operator's default


class Autoscaling(_CamelModel):
    enabled: bool = True
    # operator: the operator reads the pods' /metrics itself (needs nothing installed);
    # hpa: an HPA on CPU (+ request metrics where a custom-metrics adapter serves them);
    # keda: a KEDA ScaledObject on the same metrics through Prometheus
    engine: Literal["operator", "hpa", "keda"] = "operator"
    window_seconds: int | None = Field(None, ge=1, le=3600)  # moving average of the load (operator engine)
    keda: KedaSpec | None = None
    target_in_progress_requests: int | None = Field(None, ge=1)
    target_queue_depth: int | None = Field(None, ge=1)
    target_cpu_utilization: int | None = Field(None, ge=1, le=100, alias="targetCPUUtilization")
    behavior: dict[str, Any] | None = None


class ServerTuning(_CamelModel):
    batch_size: int | None = Field(None, ge=1)
    max_batch_tokens: int | None = Field(None, ge=64)
    max_parallel_requests: int | None = Field(None, ge=1)
    max_queue_size: int | None = Field(None, ge=0)
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] | None = None
    engine: Literal["auto", "pytorch", "onnxruntime"] | None = None
    cache_size: int | None = Field(None, ge=0)


class ServiceSpec(_CamelModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(8000, ge=1, le=65535)


class EnvVar(_CamelModel):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: dict[str, Any] | None = None


class RedisCache(_CamelModel):
    url: str | None = None
    url_secret_ref: SecretKeyRef | None = None
    ttl_seconds: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> RedisCache:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("cache.redis needs exactly one of url and urlSecretRef")
        return self


class CacheSpec(_CamelModel):
    redis: RedisCache | None = None


class RateLimits(_CamelModel):
    """Per-API-key limits across the fleet; a key's own (in the key Secret) win over these."""

    requests_per_second: float | None = Field(None, ge=0.001)
    pairs_per_second: float | None = Field(None, ge=0.001)
    request_burst: float | None = Field(None, ge=0.001)
    pair_burst: float | None = Field(None, ge=0.001)


def with_rate_limits(spec: RerankerSpec, default: RateLimits | None) -> RerankerSpec:
    """The spec with the operator's default rate limits where the Reranker sets none."""
    if spec.rate_limits is not None or default is None:
        return spec
    return spec.model_copy(update={"rate_limits": default})


class AuthSpec(_CamelModel):
    """API keys: a Secret key holding one key per line, mounted so rotation needs no restart."""

    api_key_secret_ref: SecretKeyRef


class TlsSpec(_CamelModel):
    """HTTPS on every pod: a kubernetes.io/tls Secret (tls.crt, tls.key)."""

    secret_name: str = Field(min_length=1)


class NetworkPeer(_CamelModel):
    namespace_selector: dict[str, Any] | None = None
    pod_selector: dict[str, Any] | None = None


class NetworkPolicySpec(_CamelModel):
    """Who may call the pods; the operator's own namespace is always admitted (probes, metrics)."""

    allow_from: list[NetworkPeer] = []


class RerankerSpec(_CamelModel):
    model: ModelRef
    hardware_class: HardwareClass = "cpu"
    image: str | None = None
    replicas: Replicas = Replicas()
    autoscaling: Autoscaling = Autoscaling()
    server: ServerTuning = ServerTuning()
    resources: dict[str, Any] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    env: list[EnvVar] = []
    service: ServiceSpec = ServiceSpec()
    cache: CacheSpec | None = None
    auth: AuthSpec | None = None
    rate_limits: RateLimits | None = None
    tls: TlsSpec | None = None
    network_policy: NetworkPolicySpec | None = None

    @property
    def scheme(self) -> str:
        return scheme_of({"tls": self.tls})


def scheme_of(raw_spec: dict[str, Any]) -> str:
    """The scheme a Reranker's pods serve, so every endpoint listed with them must too."""
    return "https" if raw_spec.get("tls") else "http"
