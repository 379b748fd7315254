"""Load the served model: checkpoint -> tokenizer + backend on the chosen device and dtype."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from . import scoring
from .backends import Backend, pad
from .backends.selection import Platform, Target, default_loader, detect_platform, load, plan
from .checkpoint import Checkpoint, inspect
from .encoding import Encoder
from .hardware import cpu_has_native_bf16
from .settings import Settings
from .tasks import ScoreOptions, Task, task_for

logger = logging.getLogger(__name__)

# Reduced precision is kept only when it orders these documents like float32 does.
AGREEMENT_THRESHOLD = 0.99
# int8 is kept by DTYPE=auto only when at least this much faster than float32 at start-up: below
# it, run-to-run noise on a shared machine (±10% measured here) could pick the slower one.
INT8_MIN_SPEEDUP = 1.15
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


def auto_dtype(target: Target, platform: Platform, native_bf16: bool) -> str:
    """What DTYPE=auto tries first on a target (kept only if it agrees with float32)."""
    if target in ("cuda", "mps"):
        return "float16"
    if target == "mlx":
        return "float16" if platform.apple_silicon else "float32"
    return "bfloat16" if native_bf16 else "float32"


@dataclass
class LoadedModel:
    checkpoint: Checkpoint
    encoder: Encoder
    backend: Backend
    fallback_reason: str | None
    dtype_note: str  # why this dtype, for /info
    task: Task

    def score_sync(self, query: str, documents: list[str]) -> np.ndarray:
        """Raw scores without batching or caching (calibration, warm-up, tests)."""
        encoded = self.task.encode(query, documents, ScoreOptions())
        return self.task.raw(self.backend.forward(pad(encoded.sequences, self.encoder.pad_id)))


def ranking_agreement(reference: LoadedModel, candidate: LoadedModel) -> float:
    """Mean per-query Spearman correlation of candidate scores against the reference."""
    values = [
        scoring.spearman(reference.score_sync(q, CALIBRATION_DOCUMENTS), candidate.score_sync(q, CALIBRATION_DOCUMENTS))
        for q in CALIBRATION_QUERIES
    ]
    return float(np.mean(values))


def load_model(settings: Settings, platform: Platform | None = None) -> LoadedModel:
    platform = platform or detect_platform()
    checkpoint = inspect(
        settings.model_name,
        settings.model_revision,
        settings.max_input_length,
        settings.reranker_template,
        settings.baked_hub_cache,
    )
    encoder = Encoder(checkpoint)
    task = task_for(checkpoint, encoder)
    native_bf16 = cpu_has_native_bf16()
    targets = plan(settings.device_preference, settings.use_mlx, platform)

    def dtype_for(target: Target) -> str:
        return auto_dtype(target, platform, native_bf16) if settings.dtype == "auto" else settings.dtype

    selection = load(targets, default_loader(settings, checkpoint, platform, dtype_for))
    model = LoadedModel(checkpoint, encoder, selection.backend, selection.fallback_reason, "", task)
    if settings.dtype != "auto":
        model.dtype_note = "set by DTYPE"
    elif model.backend.dtype == "float32" and model.backend.name != "mlx" and model.backend.device == "cpu":
        model = _consider_int8(model, settings, platform)
    elif model.backend.dtype == "float32":
        model.dtype_note = "auto: no faster native dtype on this device"
    else:
        model = _check_reduced_precision(model, settings, platform)
    logger.info(
        "loaded %s (%s) on %s/%s dtype=%s max_length=%d%s",
        checkpoint.model_id,
        checkpoint.kind,
        model.backend.name,
        model.backend.device,
        model.backend.dtype,
        checkpoint.max_length,
        f" fallback: {model.fallback_reason}" if model.fallback_reason else "",
    )
    return model


def forward_rate(model: LoadedModel, repeats: int = 3) -> float:
    """Pairs per second of one forward pass over the calibration pairs (best of ``repeats``)."""
    import time

    batches = [pad(model.task.encode(q, CALIBRATION_DOCUMENTS, ScoreOptions()).sequences, model.encoder.pad_id)
               for q in CALIBRATION_QUERIES]  # fmt: skip
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        started = time.perf_counter()
        for batch in batches:
            model.backend.forward(batch)
        best = min(best, time.perf_counter() - started)
    return len(CALIBRATION_QUERIES) * len(CALIBRATION_DOCUMENTS) / best


def int8_verdict(float32_rate: float, int8_rate: float, agreement: float) -> tuple[bool, str]:
    """Keep int8 only when it is clearly faster here and ranks like float32."""
    measured = f"int8 {int8_rate:.0f} vs float32 {float32_rate:.0f} pairs/s, Spearman {agreement:.4f}"
    if agreement < AGREEMENT_THRESHOLD:
        return False, f"auto: int8 rejected, it disagrees with float32 ({measured})"
    if int8_rate < INT8_MIN_SPEEDUP * float32_rate:
        return False, f"auto: int8 rejected, not {INT8_MIN_SPEEDUP}x faster ({measured})"
    return True, f"auto: int8 kept ({measured})"


def _consider_int8(model: LoadedModel, settings: Settings, platform: Platform) -> LoadedModel:
    """A CPU without native bf16: measure int8 against float32 on the calibration set."""
    # the candidate runs on float32's engine: like against like, and never a second engine's copy
    # of the weights next to the first (a PyTorch fallback here could OOM a large model's pod)
    int8_settings = settings.model_copy(update={"dtype": "int8", "engine": model.backend.name})
    try:
        backend = default_loader(int8_settings, model.checkpoint, platform, lambda _t: "int8")("cpu")
    except Exception as exc:  # an architecture quantize_dynamic can't take: float32 it is
        model.dtype_note = f"auto: int8 unavailable ({type(exc).__name__}: {exc})"
        return model
    candidate = LoadedModel(model.checkpoint, model.encoder, backend, model.fallback_reason, "", model.task)
    keep, note = int8_verdict(forward_rate(model), forward_rate(candidate), ranking_agreement(model, candidate))
    logger.info("%s", note)
    chosen = candidate if keep else model
    chosen.dtype_note = note
    return chosen


def _check_reduced_precision(model: LoadedModel, settings: Settings, platform: Platform) -> LoadedModel:
    """Measure ranking agreement against float32; keep the reduced dtype only if it holds."""
    reduced = model.backend.dtype
    float32_settings = settings.model_copy(update={"dtype": "float32"})
    target: Target = "mlx" if model.backend.name == "mlx" else model.backend.device.split(":")[0]  # type: ignore[assignment]
    loader = default_loader(float32_settings, model.checkpoint, platform, lambda _t: "float32")
    reference = LoadedModel(model.checkpoint, model.encoder, loader(target), model.fallback_reason, "", model.task)
    agreement = ranking_agreement(reference, model)
    if agreement >= AGREEMENT_THRESHOLD:
        model.dtype_note = f"auto: {reduced} agrees with float32 (Spearman {agreement:.4f})"
        return model
    logger.warning("auto dtype %s disagrees with float32 (Spearman %.4f): using float32", reduced, agreement)
    reference.dtype_note = f"auto: {reduced} rejected (Spearman {agreement:.4f} < {AGREEMENT_THRESHOLD})"
    return reference
