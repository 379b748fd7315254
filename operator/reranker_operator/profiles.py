"""Hardware profiles: one table of how a reranker is sized, placed, probed and scaled per class.

A Reranker's spec overrides any of these per resource; ``resolve`` merges the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from reranker_operator.models import RerankerSpec


@dataclass(frozen=True)
class ProbeTiming:
    period_seconds: int
    failure_threshold: int
    timeout_seconds: int = 2


@dataclass(frozen=True)
class HardwareProfile:
    hardware_class: str
    requests: dict[str, str]
    limits: dict[str, str]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    dtype: str
    engine: str  # ENGINE: what runs the model on CPUs (auto: ONNX Runtime for encoders)
    batch_size: int
    max_batch_tokens: int
    max_parallel_requests: int
    max_queue_size: int
    cache_size: int
    startup: ProbeTiming  # how long the model may take to load: period x threshold
    readiness: ProbeTiming
    liveness: ProbeTiming
    target_in_progress_requests: int  # per pod, from reranker_requests_in_progress
    target_queue_depth: int | None  # per pod, from reranker_queue_depth
    target_cpu_utilization: int | None  # percent of the CPU request
    scale_behavior: dict[str, Any] = field(default_factory=dict)
    load_window_seconds: int = 30  # the operator engine's moving average of the load
    drain_seconds: int = 5  # /ready fails this long before the listener closes
    shutdown_grace_seconds: int = 30  # in-flight requests get this long to finish
    api_processes: int = 1  # API_PROCESSES: one process until a measurement says more wins

    @property
    def cpu_threads(self) -> int:
        """Intra-op threads: the CPU limit, rounded up (the server would see the node's cores)."""
        return max(1, math.ceil(parse_cpu(self.limits.get("cpu") or self.requests.get("cpu") or "1")))


def parse_cpu(quantity: str) -> float:
    """Kubernetes CPU quantity -> cores: "2" -> 2.0, "1500m" -> 1.5."""
    text = str(quantity).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


PROFILES: dict[str, HardwareProfile] = {
    "cpu": HardwareProfile(
        hardware_class="cpu",
        requests={"cpu": "2", "memory": "3Gi"},
        limits={"cpu": "4", "memory": "4Gi"},
        node_selector={},
        tolerations=[],
        dtype="auto",  # bfloat16 where the CPU has it natively and rankings agree, else float32
        engine="auto",
        batch_size=32,
        max_batch_tokens=8192,
        max_parallel_requests=32,
        max_queue_size=128,
        cache_size=100_000,
        startup=ProbeTiming(period_seconds=5, failure_threshold=60),  # 5 minutes to load
        readiness=ProbeTiming(period_seconds=5, failure_threshold=2),
        liveness=ProbeTiming(period_seconds=10, failure_threshold=3),
        target_in_progress_requests=8,
        target_queue_depth=None,
        target_cpu_utilization=70,
        scale_behavior={
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            },
        },
    ),
    "nvidia-gpu": HardwareProfile(
        hardware_class="nvidia-gpu",
        requests={"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        limits={"cpu": "8", "memory": "24Gi", "nvidia.com/gpu": "1"},
        node_selector={},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        dtype="auto",  # float16 on the GPU
        engine="auto",  # CPUs only: on the GPU the server runs PyTorch
        batch_size=64,
        max_batch_tokens=32768,
        max_parallel_requests=64,
        max_queue_size=256,
        cache_size=200_000,
        startup=ProbeTiming(period_seconds=10, failure_threshold=90),  # 15 minutes: CUDA init + weights
        readiness=ProbeTiming(period_seconds=5, failure_threshold=2),
        liveness=ProbeTiming(period_seconds=10, failure_threshold=6, timeout_seconds=5),
        target_in_progress_requests=16,
        target_queue_depth=8,
        target_cpu_utilization=None,  # GPU pods are bound by the device, not the CPU
        scale_behavior={
            "scaleUp": {  # fast: a GPU pod takes minutes to become ready
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
            },
            "scaleDown": {  # slow: GPUs are expensive to get back
                "stabilizationWindowSeconds": 600,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
            },
        },
        shutdown_grace_seconds=60,
        load_window_seconds=60,  # a GPU pod is slow to start: react to sustained load, not a spike
    ),
}


def resolve(spec: RerankerSpec) -> HardwareProfile:
    """The class's profile with the spec's overrides applied."""
    profile = PROFILES[spec.hardware_class]
    tuning, scaling = spec.server, spec.autoscaling
    overrides: dict[str, Any] = {
        "dtype": tuning.dtype,
        "engine": tuning.engine,
        "batch_size": tuning.batch_size,
        "max_batch_tokens": tuning.max_batch_tokens,
        "max_parallel_requests": tuning.max_parallel_requests,
        "max_queue_size": tuning.max_queue_size,
        "cache_size": tuning.cache_size,
        "api_processes": tuning.api_processes,
        "target_in_progress_requests": scaling.target_in_progress_requests,
        "target_queue_depth": scaling.target_queue_depth,
        "target_cpu_utilization": scaling.target_cpu_utilization,
        "scale_behavior": scaling.behavior,
        "load_window_seconds": scaling.window_seconds,
        "tolerations": spec.tolerations,
    }
    if spec.resources is not None:
        overrides["requests"] = dict(spec.resources.get("requests") or {})
        overrides["limits"] = dict(spec.resources.get("limits") or {})
    if spec.node_selector is not None:
        overrides["node_selector"] = {**profile.node_selector, **spec.node_selector}
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})


def summary(profile: HardwareProfile) -> dict[str, Any]:
    """The resolved profile as status reports it."""
    return {
        "hardwareClass": profile.hardware_class,
        "requests": profile.requests,
        "limits": profile.limits,
        "dtype": profile.dtype,
        "engine": profile.engine,
        "batchSize": profile.batch_size,
        "maxBatchTokens": profile.max_batch_tokens,
        "maxParallelRequests": profile.max_parallel_requests,
        "maxQueueSize": profile.max_queue_size,
        "threads": profile.cpu_threads,
        "apiProcesses": profile.api_processes,
    }
