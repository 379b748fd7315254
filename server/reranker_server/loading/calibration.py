"""DTYPE=auto's rules: which dtype each target tries first, and how a candidate is judged against
float32 (ranking agreement on a calibration set, and speed)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from reranker_server.backends import pad
from reranker_server.backends.selection import Platform, Target
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.model import scoring
from reranker_server.model.tasks import ScoreOptions

# Reduced precision is kept only when it orders these documents like float32 does.
AGREEMENT_THRESHOLD = 0.99
# A reduced dtype is kept by DTYPE=auto on a CPU only when at least this much faster than float32 at
# start-up: below it, run-to-run noise on a shared machine (±10% measured here) could pick the slower one.
MIN_SPEEDUP = 1.15
CALIBRATION_QUERIES = [
    "how do plants make food",
    "capital of france",
    "what does a kubernetes service do",
    "fast animals",
]
CALIBRATION_DOCUMENTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Paris is the capital and largest city of France.",
    "A Service gives a set of pods one stable virtual address and load-balances across them.",
    "The cheetah is the fastest land animal, reaching over 100 km/h.",
    "Berlin is the capital of Germany.",
    "Plants need sunlight, water and nutrients from the soil to grow.",
    "A Deployment keeps the requested number of pod replicas running.",
    "Falcons dive at more than 300 km/h when hunting.",
    "The Eiffel Tower was built for the 1889 World's Fair in Paris.",
    "Chlorophyll absorbs red and blue light and reflects green.",
    "Kubernetes schedules containers onto nodes in a cluster.",
    "Snails are among the slowest animals on earth.",
]


def auto_dtype(target: Target, platform: Platform) -> str:
    """What DTYPE=auto loads first on a target: float16 on GPUs (kept only if it agrees with float32);
    float32 on CPUs, where the reduced candidates are timed against it (``cpu_candidates``)."""
    if target in ("cuda", "mps"):
        return "float16"
    if target == "mlx":
        return "float16" if platform.apple_silicon else "float32"
    return "float32"


def cpu_candidates(float32_engine: str, native_bf16: bool) -> list[tuple[str, str]]:
    """(dtype, engine) DTYPE=auto times against float32 on a CPU, each on the engine that runs it:
    int8 on float32's engine, bfloat16 on PyTorch where the CPU has it natively (ONNX Runtime has no
    bf16 kernels)."""
    return [("int8", float32_engine), *([("bfloat16", "pytorch")] if native_bf16 else [])]


@dataclass(frozen=True)
class Measured:
    dtype: str
    engine: str
    rate: float  # pairs/s of the calibration batches
    agreement: float  # Spearman against float32


def fastest_agreeing(reference: Measured, candidates: list[Measured]) -> tuple[Measured, str]:
    """The fastest candidate that ranks like float32 and beats it by MIN_SPEEDUP, else float32; and
    what was measured, for /info and the log."""
    eligible = [c for c in candidates if c.agreement >= AGREEMENT_THRESHOLD and c.rate >= MIN_SPEEDUP * reference.rate]
    chosen = max(eligible, key=lambda c: c.rate, default=reference)

    def said(m: Measured) -> str:
        verdict = "" if m is reference else " disagrees" if m.agreement < AGREEMENT_THRESHOLD else ""
        slow = " not faster" if m is not reference and not verdict and m not in eligible else ""
        agreement = "" if m is reference else f", Spearman {m.agreement:.4f}"
        return f"{m.dtype}/{m.engine} {m.rate:.0f} pairs/s{agreement}{verdict}{slow}"

    measured = "; ".join(said(m) for m in [reference, *candidates])
    return chosen, f"auto: {chosen.dtype} on {chosen.engine}, the fastest that ranks like float32 ({measured})"


def ranking_agreement(reference: LoadedModel, candidate: LoadedModel) -> float:
    """Mean per-query Spearman correlation of candidate scores against the reference."""
    values = [
        scoring.spearman(reference.score_sync(q, CALIBRATION_DOCUMENTS), candidate.score_sync(q, CALIBRATION_DOCUMENTS))
        for q in CALIBRATION_QUERIES
    ]
    return float(np.mean(values))


def forward_rate(model: LoadedModel, repeats: int = 3) -> float:
    """Pairs per second of one forward pass over the calibration pairs (best of ``repeats``)."""
    batches = [pad(model.task.encode(q, CALIBRATION_DOCUMENTS, ScoreOptions()).sequences, model.encoder.pad_id)
               for q in CALIBRATION_QUERIES]  # fmt: skip
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        started = time.perf_counter()
        for batch in batches:
            model.backend.forward(batch)
        best = min(best, time.perf_counter() - started)
    return len(CALIBRATION_QUERIES) * len(CALIBRATION_DOCUMENTS) / best
