"""Load the served model: checkpoint -> tokenizer + backend on the chosen device and dtype."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from . import dtype_verdicts, scoring
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
    targets = plan(settings.device_preference, settings.use_mlx, platform)

    def dtype_for(target: Target) -> str:
        return auto_dtype(target, platform) if settings.dtype == "auto" else settings.dtype

    selection = load(targets, default_loader(settings, checkpoint, platform, dtype_for))
    model = LoadedModel(checkpoint, encoder, selection.backend, selection.fallback_reason, "", task)
    if settings.dtype != "auto":
        model.dtype_note = "set by DTYPE"
    elif model.backend.dtype == "float32" and model.backend.name != "mlx" and model.backend.device == "cpu":
        model = _choose_cpu_dtype(model, settings, platform)
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


def _candidate(model: LoadedModel, settings: Settings, platform: Platform, dtype: str, engine: str) -> LoadedModel:
    candidate_settings = settings.model_copy(update={"dtype": dtype, "engine": engine})
    backend = default_loader(candidate_settings, model.checkpoint, platform, lambda _t: dtype)("cpu")
    return LoadedModel(model.checkpoint, model.encoder, backend, model.fallback_reason, "", model.task)


def _choose_cpu_dtype(model: LoadedModel, settings: Settings, platform: Platform) -> LoadedModel:
    """DTYPE=auto on a CPU: float32 and each candidate timed on the calibration set, one loaded at a
    time beside float32, the fastest that agrees kept; the verdict is kept for the next start."""
    from .backends.onnx_export import default_cache_dir

    native_bf16 = cpu_has_native_bf16()
    rule = {"agreement": AGREEMENT_THRESHOLD, "speedup": MIN_SPEEDUP, "bf16": float(native_bf16)}
    cache = dtype_verdicts.verdict_path(settings.onnx_cache_dir or default_cache_dir(), model.checkpoint, rule)
    known = dtype_verdicts.read(cache)
    if known is not None:
        if (known["dtype"], known["engine"]) == ("float32", model.backend.name):
            model.dtype_note = f"{known['note']} [measured at an earlier start]"
            return model
        with contextlib.suppress(Exception):  # the libraries changed under it, say: measure again
            known_best = _candidate(model, settings, platform, known["dtype"], known["engine"])
            known_best.dtype_note = f"{known['note']} [measured at an earlier start]"
            return known_best
    reference = Measured("float32", model.backend.name, forward_rate(model), 1.0)
    best, measured, notes = model, [], []
    for dtype, engine in cpu_candidates(model.backend.name, native_bf16):
        try:
            candidate = _candidate(model, settings, platform, dtype, engine)
        except Exception as exc:  # an architecture quantize_dynamic can't take, say
            notes.append(f"{dtype}/{engine} unavailable ({type(exc).__name__}: {exc})")
            continue
        measured.append(Measured(dtype, engine, forward_rate(candidate), ranking_agreement(model, candidate)))
        winner, _ = fastest_agreeing(reference, measured)
        best = candidate if winner is measured[-1] else best  # a loser is dropped at once (memory)
    verdict, note = fastest_agreeing(reference, measured)
    note = "; ".join([note, *notes])
    logger.info("%s", note)
    dtype_verdicts.write(cache, {"dtype": verdict.dtype, "engine": verdict.engine, "note": note})
    best.dtype_note = note
    return best


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
