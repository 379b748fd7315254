"""The ``Reranker`` resource (``reranker.dev/v1alpha1``): its spec and status as typed models,
and the one source of its CRD (``crds.py`` writes ``crds/`` from them).

Kubernetes-only facts live beside the fields: CEL rules, defaults the API server fills in
(``CRD_DEFAULT``), list and quantity markers. The model re-checks what the operator relies on,
because an API server without the schema (or an older one without CEL) lets a bad spec in.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reranker_contract.api import API_VERSION, GROUP, RERANKER_KIND, RERANKER_PLURAL, VERSION
from reranker_contract.crd import (
    CONDITIONS_LIST,
    CRD_DEFAULT,
    CrdInfo,
    PrinterColumn,
    StatusCondition,
    condition_column,
    rules,
)

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "RerankerSpec"]
PLURAL = RERANKER_PLURAL
KIND = RERANKER_KIND
_DEFAULT: dict[str, Any] = {CRD_DEFAULT: True}  # the API server fills in the field's default
_QUANTITIES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
}  # Kubernetes quantities: 2, "500m", "4Gi"

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


class TokenSecretRef(SecretKeyRef):
    """A Secret key holding HF_TOKEN, for gated models (given to the loader Job only when cached)."""


AccessMode = Literal["ReadOnlyMany", "ReadWriteOnce"]


class PvcCache(_CamelModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            ("has(self.existingClaim) || has(self.size)", "size is required when the operator creates the claim"),
            ("has(self.existingClaim) || !has(self.create) || self.create",
             "create is false, so existingClaim must name the claim to use"),
        )
    )  # fmt: skip

    size: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="Size of the claim the operator creates, e.g. 20Gi (the model plus room).",
    )
    storage_class_name: str | None = Field(
        None, description="Storage class of the claim; unset, the cluster's default."
    )
    access_mode: AccessMode | None = Field(
        None,
        description="ReadOnlyMany - pods on any node share it (needs a file-system class such as NFS, EFS, "
        "Filestore, Azure Files, CephFS); ReadWriteOnce - any class, but every pod runs on the node the claim is "
        "attached to. Unset, decided from the class's provisioner.",
    )
    create: bool = Field(True, description="The operator creates the claim (the default), or uses existingClaim.")
    existing_claim: str | None = Field(
        None,
        min_length=1,
        description="An existing claim to fill and mount instead of creating one (kept when the Reranker goes).",
    )

    @model_validator(mode="after")
    def _sized(self) -> PvcCache:
        if self.existing_claim is None and not self.create:
            raise ValueError("model.cache.pvc: create is false, so existingClaim must name the claim to use")
        if self.existing_claim is None and not self.size:
            raise ValueError("model.cache.pvc.size: required when the operator creates the claim")
        return self


class ModelCache(_CamelModel):
    """Download the model once into a PersistentVolumeClaim (a loader Job runs `reranker-server download`);
    every pod mounts it read-only and runs offline."""

    pvc: PvcCache


class ModelRef(_CamelModel):
    """The model to serve."""

    name: str = Field(min_length=1, description="Hugging Face model id, or a directory baked into the image.")
    revision: str | None = Field(None, description="Hub branch, tag or commit.")
    hub_endpoint: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="A Hugging Face hub mirror (HF_ENDPOINT) the model loader fetches from, and the pods when "
        "there is no cache; default the operator's (the chart's hub.endpoint), else the hub.",
    )
    token_secret_ref: TokenSecretRef | None = None
    cache: ModelCache | None = None


def with_hub_endpoint(spec: RerankerSpec, default: str | None) -> RerankerSpec:
    """The spec with the operator's hub mirror where the Reranker names none."""
    if spec.model.hub_endpoint or not default:
        return spec
    return spec.model_copy(update={"model": spec.model.model_copy(update={"hub_endpoint": default})})


class Replicas(_CamelModel):
    # has(): the API server also evaluates rules on the bare `default: {}`
    model_config = ConfigDict(
        json_schema_extra=rules(
            ("!has(self.min) || !has(self.max) || self.min <= self.max", "replicas.min must not exceed replicas.max")
        )
    )

    min: int = Field(1, ge=1, json_schema_extra=_DEFAULT)
    max: int = Field(3, ge=1, json_schema_extra=_DEFAULT)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        return self


class KedaSpec(_CamelModel):
    """The keda engine's Prometheus trigger."""

    server_address: str | None = Field(
        None,
        min_length=1,
        description="Prometheus URL; unset, the operator's default (chart value autoscaling.keda.prometheusAddress).",
    )


class Autoscaling(_CamelModel):
    enabled: bool = Field(True, json_schema_extra=_DEFAULT)
    engine: Literal["operator", "hpa", "keda"] = Field(
        "operator",
        json_schema_extra=_DEFAULT,
        description="operator - the operator reads every pod's and external endpoint's /metrics and sets the "
        "replicas (needs nothing installed); hpa - an HPA on CPU, plus the request metrics where a custom-metrics "
        "adapter serves them; keda - a KEDA ScaledObject with a Prometheus trigger on the request metrics.",
    )
    window_seconds: int | None = Field(
        None, ge=1, le=3600, description="Moving average of the load the operator engine scales on (profile default)."
    )
    keda: KedaSpec | None = None
    target_in_progress_requests: int | None = Field(
        None,
        ge=1,
        description="Requests per replica: in progress + queued (operator and keda engines), or average "
        "reranker_requests_in_progress per pod (hpa engine).",
    )
    target_queue_depth: int | None = Field(None, ge=1, description="Average reranker_queue_depth per pod.")
    target_cpu_utilization: int | None = Field(None, ge=1, le=100, alias="targetCPUUtilization")
    behavior: dict[str, Any] | None = Field(
        None, description="HorizontalPodAutoscaler behavior, replacing the profile's."
    )


class ServerTuning(_CamelModel):
    """Server tuning, overriding the hardware profile."""

    batch_size: int | None = Field(None, ge=1)
    max_batch_tokens: int | None = Field(None, ge=64)
    max_parallel_requests: int | None = Field(None, ge=1)
    max_queue_size: int | None = Field(None, ge=0)
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] | None = Field(
        None,
        description="auto: float16 on GPUs where rankings agree; on CPUs the fastest of float32, int8 and (with "
        "native bf16) bfloat16 that ranks like float32.",
    )
    engine: Literal["auto", "pytorch", "onnxruntime"] | None = Field(
        None,
        description="What runs the model on CPUs. auto: ONNX Runtime for cross- and bi-encoders in float32 or "
        "int8, PyTorch otherwise.",
    )
    cache_size: int | None = Field(None, ge=0)
    api_processes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Processes for HTTP, JSON and tokenization in each pod, feeding one engine process that owns "
        "the model (1: one process does everything). More when one process's event loop is the limit: a fast "
        "model on a GPU or many cores.",
    )


class ServiceSpec(_CamelModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", json_schema_extra=_DEFAULT)
    port: int = Field(8000, ge=1, le=65535, json_schema_extra=_DEFAULT)


class EnvVar(_CamelModel):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: dict[str, Any] | None = None


class RedisCache(_CamelModel):
    """Redis every replica (and registered Mac) shares scores and rate-limit buckets through."""

    model_config = ConfigDict(
        json_schema_extra=rules(("has(self.url) != has(self.urlSecretRef)", "set exactly one of url and urlSecretRef"))
    )

    url: str | None = Field(
        None, min_length=1, description="redis://host:6379/0 (use urlSecretRef when it holds a password)."
    )
    url_secret_ref: SecretKeyRef | None = None
    ttl_seconds: int | None = Field(None, ge=1, description="How long shared scores live (default one day).")

    @model_validator(mode="after")
    def _one_source(self) -> RedisCache:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("cache.redis needs exactly one of url and urlSecretRef")
        return self


class CacheSpec(_CamelModel):
    """Shared score cache (distributed mode)."""

    redis: RedisCache | None = None


class RateLimits(_CamelModel):
    """Per-API-key limits across the fleet (atomic token buckets in spec.cache.redis's Redis; without it, each
    server enforces its share). A key's own limits, after it in the key Secret, win. Unset: the operator's
    default (the chart's rateLimits), else no limit."""

    requests_per_second: float | None = Field(None, ge=0.001, description="Requests per second each key may make.")
    pairs_per_second: float | None = Field(
        None, ge=0.001, description="(query, document) pairs per second each key may send."
    )
    request_burst: float | None = Field(
        None, ge=0.001, description="Requests a key may make at once (default one second's worth)."
    )
    pair_burst: float | None = Field(
        None, ge=0.001, description="Pairs a key may send at once (default one second's worth)."
    )


def with_rate_limits(spec: RerankerSpec, default: RateLimits | None) -> RerankerSpec:
    """The spec with the operator's default rate limits where the Reranker sets none."""
    if spec.rate_limits is not None or default is None:
        return spec
    return spec.model_copy(update={"rate_limits": default})


class ApiKeySecretRef(SecretKeyRef):
    """A Secret key holding one API key per line (optionally with its own limits); mounted, so rotating it
    needs no restart."""


class AuthSpec(_CamelModel):
    """API keys every request to the pods must carry (Authorization Bearer)."""

    api_key_secret_ref: ApiKeySecretRef


class TlsSpec(_CamelModel):
    """Serve HTTPS from every pod; external endpoints must then register with https too."""

    secret_name: str = Field(
        min_length=1, description="A kubernetes.io/tls Secret (tls.crt, tls.key) in the Reranker's namespace."
    )


class NetworkPeer(_CamelModel):
    namespace_selector: dict[str, Any] | None = None
    pod_selector: dict[str, Any] | None = None


class NetworkPolicySpec(_CamelModel):
    """When set, a NetworkPolicy admits only these peers (and the operator) to the pods."""

    allow_from: list[NetworkPeer] = Field([], max_length=32)


class RerankerSpec(_CamelModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            ("!has(self.hardwareClass) || self.hardwareClass != 'nvidia-gpu' || !has(self.resources) "
             "|| (has(self.resources.limits) && 'nvidia.com/gpu' in self.resources.limits)",
             'the nvidia-gpu class needs resources.limits["nvidia.com/gpu"] when resources are set'),
            field_path=".resources",
        )
    )  # fmt: skip

    model: ModelRef
    hardware_class: HardwareClass = Field(
        "cpu",
        json_schema_extra=_DEFAULT,
        description="Which hardware profile sizes, places, probes and scales the pods.",
    )
    image: str | None = Field(None, description="Server image; default is the operator's RERANKER_IMAGE.")
    replicas: Replicas = Field(Replicas(), json_schema_extra={CRD_DEFAULT: {}})
    autoscaling: Autoscaling = Field(Autoscaling(), json_schema_extra={CRD_DEFAULT: {}})
    server: ServerTuning = ServerTuning()
    resources: dict[str, Any] | None = Field(
        None,
        description="Container resources, replacing the profile's.",
        json_schema_extra={"properties": {"requests": _QUANTITIES, "limits": _QUANTITIES}},
    )
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    env: list[EnvVar] = []
    service: ServiceSpec = Field(ServiceSpec(), json_schema_extra={CRD_DEFAULT: {}})
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


# --- status: what the operator writes (the schema only; the reconcile builds it as a dict) ------


class ReplicaChange(BaseModel):
    time: datetime.datetime | None = None
    from_: int | None = Field(None, alias="from")
    to: int | None = None
    reason: str | None = None


class AutoscalingStatus(_CamelModel):
    """The engine, what it scales on, and its last decision."""

    engine: str | None = None
    load: str | None = Field(
        None, description="Requests in progress + queued over the fleet, averaged over the window (operator engine)."
    )
    desired_replicas: int | None = None
    last_scale: ReplicaChange | None = None
    enabled: bool | None = None
    metrics: list[str] | None = None


class ModelCacheStatus(_CamelModel):
    """The model cache's claim and how its load goes."""

    claim: str | None = None
    access_mode: str | None = None
    phase: Literal["Loading", "Cached", "Failed"] | None = None
    summary: str | None = None
    downloaded_bytes: int | None = None
    total_bytes: int | None = None


class EndpointCounts(_CamelModel):
    ready: int | None = None
    total: int | None = None


class RerankerStatus(_CamelModel):
    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    replica_summary: str | None = None
    url: str | None = None
    profile: dict[str, Any] | None = None
    autoscaling: AutoscalingStatus | None = None
    model_cache: ModelCacheStatus | None = None
    external_endpoints: EndpointCounts | None = None
    fleet_size: int | None = Field(
        None,
        description="Ready pods plus ready external endpoints; the servers divide the rate limits by it without Redis.",
    )
    conditions: list[StatusCondition] | None = Field(None, json_schema_extra=CONDITIONS_LIST)


CRD_INFO = CrdInfo(
    kind=KIND,
    plural=PLURAL,
    description="A reranker service - a cross-encoder model served by a tuned, autoscaled Deployment.",
    short_names=("rr",),
    # not "reranker": a category named like a resource's singular breaks `kubectl get reranker NAME`
    categories=("all", "reranker-fleet"),
    columns=(
        PrinterColumn("Model", ".spec.model.name"),
        PrinterColumn("Class", ".spec.hardwareClass"),
        PrinterColumn("Ready", condition_column("Ready", "status")),
        PrinterColumn("Degraded", condition_column("Degraded", "reason"),
                      description="Why the Reranker is degraded (AsExpected when it is not)"),
        PrinterColumn("Replicas", ".status.replicaSummary"),
        PrinterColumn("Load", ".status.autoscaling.load"),
        PrinterColumn("Cache", ".status.modelCache.summary"),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
        PrinterColumn("Message", condition_column("Degraded", "message"), priority=1,
                      description="What is wrong, in the words of whoever said it (kubectl get -o wide)"),
    ),
)  # fmt: skip
