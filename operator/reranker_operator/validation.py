"""A Reranker's spec as the operator reads it: parsed by the models, then what it can't honour,
each problem naming its field (they become the Degraded condition's message and an Event)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reranker_contract.server_env import RESERVED as RESERVED_ENV
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import parse_cpu


def validate(raw_spec: dict[str, Any], default_image: str | None) -> tuple[RerankerSpec | None, list[str]]:
    """Parse the spec and list what the operator can't honour (each problem names its field)."""
    try:
        spec = RerankerSpec.model_validate(raw_spec)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in ("spec", *error["loc"]))
            problems.append(f"{field}: {error['msg']}")
        return None, problems
    problems = []
    if not spec.image and not default_image:
        problems.append("spec.image: not set, and the operator has no default image (RERANKER_IMAGE)")
    for var in spec.env:
        if var.name in RESERVED_ENV:
            problems.append(f"spec.env: {var.name} is set by the operator from the spec; use the spec field")
    requests = (spec.resources or {}).get("requests") or {}
    limits = (spec.resources or {}).get("limits") or {}
    try:
        if "cpu" in requests and "cpu" in limits and parse_cpu(limits["cpu"]) < parse_cpu(requests["cpu"]):
            problems.append(f"spec.resources: cpu limit {limits['cpu']} is below the request {requests['cpu']}")
    except ValueError:
        problems.append("spec.resources: cpu quantities must look like 2 or 1500m")
    if spec.hardware_class == "nvidia-gpu" and spec.resources is not None and "nvidia.com/gpu" not in limits:
        problems.append("spec.resources.limits: the nvidia-gpu class needs nvidia.com/gpu")
    return spec, problems
