"""The ``RerankerEndpoint`` resource: its spec and status as typed models, the one source of its
CRD (``reranker_operator.crds`` writes it). ``endpoint.EndpointSpec`` is the flat view both sides
read and write; a test holds its manifest to this schema."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .api import ENDPOINT_KIND, ENDPOINT_PLURAL
from .crd import CONDITIONS_LIST, CRD_DEFAULT, CrdInfo, PrinterColumn, StatusCondition, condition_column
from .endpoint import DEFAULT_PORT

_DEFAULT: dict[str, Any] = {CRD_DEFAULT: True}


class _Resource(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class RerankerRef(_Resource):
    name: str = Field(min_length=1, description="The Reranker (same namespace) whose Service this endpoint joins.")


class RerankerEndpointSpec(_Resource):
    reranker_ref: RerankerRef = Field(alias="rerankerRef")
    address: str = Field(
        min_length=1, description="IPv4 or IPv6 address, or DNS name, the cluster reaches the server at."
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, json_schema_extra=_DEFAULT)
    scheme: str = Field("http", json_schema_extra=_DEFAULT | {"enum": ["http", "https"]})
    hardware_class: str = Field("apple-silicon", alias="hardwareClass", json_schema_extra=_DEFAULT)
    capacity: int | None = Field(
        None, ge=1, description="How many requests it serves at once (a hint, e.g. its MAX_PARALLEL_REQUESTS)."
    )
    ca_bundle: str | None = Field(
        None,
        alias="caBundle",
        description="PEM certificates the operator trusts when it probes an https endpoint (default the system's).",
    )
    lease_name: str | None = Field(
        None,
        alias="leaseName",
        description="coordination.k8s.io Lease renewed by a self-registered server; expired means gone.",
    )


class RerankerEndpointStatus(_Resource):
    observed_generation: int | None = Field(None, alias="observedGeneration")
    last_probe_time: datetime.datetime | None = Field(None, alias="lastProbeTime")
    backend: str | None = None
    device: str | None = None
    model: str | None = None
    latency_ms: float | None = Field(None, alias="latencyMs")
    fleet_size: int | None = Field(
        None,
        alias="fleetSize",
        description="The Reranker's fleet size; the registered server reads it at each Lease renewal.",
    )
    consecutive_failures: int | None = Field(None, alias="consecutiveFailures")
    consecutive_successes: int | None = Field(None, alias="consecutiveSuccesses")
    conditions: list[StatusCondition] | None = Field(None, json_schema_extra=CONDITIONS_LIST)


CRD_INFO = CrdInfo(
    kind=ENDPOINT_KIND,
    plural=ENDPOINT_PLURAL,
    description="A reranker-server outside the cluster (e.g. a Mac mini) serving a Reranker's model.",
    short_names=("rre",),
    categories=("reranker-fleet",),
    columns=(
        PrinterColumn("Reranker", ".spec.rerankerRef.name"),
        PrinterColumn("Address", ".spec.address"),
        PrinterColumn("Ready", condition_column("Ready", "status")),
        PrinterColumn("Reason", condition_column("Ready", "reason")),
        PrinterColumn("Backend", ".status.backend"),
        PrinterColumn("Latency", ".status.latencyMs"),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
