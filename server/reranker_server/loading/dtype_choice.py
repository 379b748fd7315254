"""DTYPE=auto after the first load: on a CPU, time each candidate and keep the fastest that ranks
like float32 (the verdict kept for the next start); elsewhere, keep a reduced dtype only if it agrees."""

from __future__ import annotations

import contextlib
import logging

from reranker_server.backends.selection import Platform, Target, default_loader
from reranker_server.core.settings import Settings
from reranker_server.loading import calibration, dtype_verdicts
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.model.hardware import cpu_has_native_bf16

logger = logging.getLogger(__name__)


def _candidate(model: LoadedModel, settings: Settings, platform: Platform, dtype: str, engine: str) -> LoadedModel:
    candidate_settings = settings.model_copy(update={"dtype": dtype, "engine": engine})
    backend = default_loader(candidate_settings, model.checkpoint, platform, lambda _t: dtype)("cpu")
    return LoadedModel(model.checkpoint, model.encoder, backend, model.fallback_reason, "", model.task)


def choose_cpu_dtype(model: LoadedModel, settings: Settings, platform: Platform) -> LoadedModel:
    """DTYPE=auto on a CPU: float32 and each candidate timed on the calibration set, one loaded at a
    time beside float32, the fastest that agrees kept; the verdict is kept for the next start."""
    from reranker_server.backends.onnx.export import default_cache_dir

    native_bf16 = cpu_has_native_bf16()
    rule = {
        "agreement": calibration.AGREEMENT_THRESHOLD,
        "speedup": calibration.MIN_SPEEDUP,
        "bf16": float(native_bf16),
    }
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
    reference = calibration.Measured("float32", model.backend.name, calibration.forward_rate(model), 1.0)
    best, measured, notes = model, [], []
    for dtype, engine in calibration.cpu_candidates(model.backend.name, native_bf16):
        try:
            candidate = _candidate(model, settings, platform, dtype, engine)
        except Exception as exc:  # an architecture quantize_dynamic can't take, say
            notes.append(f"{dtype}/{engine} unavailable ({type(exc).__name__}: {exc})")
            continue
        measured.append(
            calibration.Measured(
                dtype, engine, calibration.forward_rate(candidate), calibration.ranking_agreement(model, candidate)
            )
        )
        winner, _ = calibration.fastest_agreeing(reference, measured)
        best = candidate if winner is measured[-1] else best  # a loser is dropped at once (memory)
    verdict, note = calibration.fastest_agreeing(reference, measured)
    note = "; ".join([note, *notes])
    logger.info("%s", note)
    dtype_verdicts.write(cache, {"dtype": verdict.dtype, "engine": verdict.engine, "note": note})
    best.dtype_note = note
    return best


def check_reduced_precision(model: LoadedModel, settings: Settings, platform: Platform) -> LoadedModel:
    """Measure ranking agreement against float32; keep the reduced dtype only if it holds."""
    reduced = model.backend.dtype
    float32_settings = settings.model_copy(update={"dtype": "float32"})
    target: Target = "mlx" if model.backend.name == "mlx" else model.backend.device.split(":")[0]  # type: ignore[assignment]
    loader = default_loader(float32_settings, model.checkpoint, platform, lambda _t: "float32")
    reference = LoadedModel(model.checkpoint, model.encoder, loader(target), model.fallback_reason, "", model.task)
    agreement = calibration.ranking_agreement(reference, model)
    if agreement >= calibration.AGREEMENT_THRESHOLD:
        model.dtype_note = f"auto: {reduced} agrees with float32 (Spearman {agreement:.4f})"
        return model
    logger.warning("auto dtype %s disagrees with float32 (Spearman %.4f): using float32", reduced, agreement)
    reference.dtype_note = f"auto: {reduced} rejected (Spearman {agreement:.4f} < {calibration.AGREEMENT_THRESHOLD})"
    return reference
