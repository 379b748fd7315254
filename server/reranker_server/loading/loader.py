"""Load the served model: checkpoint -> tokenizer + backend on the chosen device and dtype."""

from __future__ import annotations

import logging

from reranker_server.backends.selection import Platform, Target, default_loader, detect_platform, load, plan
from reranker_server.core.settings import Settings
from reranker_server.loading.calibration import auto_dtype
from reranker_server.loading.dtype_choice import check_reduced_precision, choose_cpu_dtype
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.model.checkpoint import inspect
from reranker_server.model.encoding import Encoder
from reranker_server.model.tasks import task_for

logger = logging.getLogger(__name__)


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
        model = choose_cpu_dtype(model, settings, platform)
    elif model.backend.dtype == "float32":
        model.dtype_note = "auto: no faster native dtype on this device"
    else:
        model = check_reduced_precision(model, settings, platform)
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
