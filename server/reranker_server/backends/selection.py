"""Which backend and device to run on, and falling back when the preferred one can't load.

``plan`` is pure (platform facts in, ordered candidates out) so every platform can be tested
on any machine; ``load`` walks the plan and records why it fell back.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reranker_contract.server_env import ONNX_RUNTIME_DTYPES
from reranker_server.backends import Backend
from reranker_server.backends.onnx.backend import onnxruntime_available
from reranker_server.core.settings import Settings
from reranker_server.model.checkpoint import ENCODER_KINDS, Checkpoint

logger = logging.getLogger(__name__)

Target = Literal["mlx", "cuda", "mps", "cpu"]


@dataclass(frozen=True)
class Platform:
    apple_silicon: bool
    mlx_importable: bool
    cuda: bool
    mps: bool


FALLBACK_CHAINS: dict[Target, list[Target]] = {
    "mlx": ["mlx", "mps", "cpu"],
    "cuda": ["cuda", "cpu"],
    "mps": ["mps", "cpu"],
    "cpu": ["cpu"],
}


def _chain(first: Target) -> list[Target]:
    """Fallback order after a preferred target: MLX -> MPS -> CPU, CUDA -> CPU, MPS -> CPU."""
    return list(FALLBACK_CHAINS[first])


def plan(device_preference: str, use_mlx: str, platform: Platform) -> list[Target]:
    if use_mlx == "true" or device_preference == "mlx":
        return _chain("mlx")
    if device_preference in ("cuda", "mps", "cpu"):
        return _chain(device_preference)  # type: ignore[arg-type]
    if platform.apple_silicon and platform.mlx_importable and use_mlx != "false":
        return _chain("mlx")
    if platform.cuda:
        return _chain("cuda")
    if platform.mps:
        return _chain("mps")
    return ["cpu"]


def cpu_engine(engine: str, kind: str, dtype: str, onnxruntime_installed: bool) -> str:
    """Which engine runs a model on a CPU: "onnxruntime" or "pytorch" (ENGINE=auto prefers ONNX Runtime
    where it can take the model; ENGINE=onnxruntime where it can't is an error, not a quiet switch)."""
    if engine == "pytorch":
        return "pytorch"
    problem = None
    if not onnxruntime_installed:
        problem = "onnxruntime is not installed (pip install 'reranker-fleet[server]')"
    elif kind not in ENCODER_KINDS:
        problem = f"it serves encoders ({', '.join(ENCODER_KINDS)}), not {kind}"
    elif dtype not in ONNX_RUNTIME_DTYPES:
        problem = f"it runs {' or '.join(ONNX_RUNTIME_DTYPES)} here, not {dtype}"
    if problem is None:
        return "onnxruntime"
    if engine == "onnxruntime":
        raise ValueError(f"ENGINE=onnxruntime: {problem}")
    return "pytorch"


def detect_platform() -> Platform:
    from reranker_server.backends.torch_backend import cuda_available, mps_available
    from reranker_server.model.hardware import is_apple_silicon

    return Platform(
        apple_silicon=is_apple_silicon(),
        mlx_importable=importlib.util.find_spec("mlx") is not None,
        cuda=cuda_available(),
        mps=mps_available(),
    )


@dataclass
class Selection:
    backend: Backend
    fallback_reason: str | None


Loader = Callable[[Target], Backend]


def load(targets: list[Target], loader: Loader) -> Selection:
    """Try each target in order; the reasons for skipping earlier ones become ``fallback_reason``."""
    reasons: list[str] = []
    for target in targets:
        try:
            backend = loader(target)
        except Exception as exc:
            reason = f"{target}: {type(exc).__name__}: {exc}"
            logger.warning("backend %s unavailable, falling back: %s", target, reason)
            reasons.append(reason)
            continue
        return Selection(backend, "; ".join(reasons) or None)
    raise RuntimeError("no backend could load the model: " + "; ".join(reasons))


def default_loader(
    settings: Settings, checkpoint: Checkpoint, platform: Platform, dtype_for: Callable[[Target], str]
) -> Loader:
    def load_target(target: Target) -> Backend:
        if target == "mlx":
            try:
                if checkpoint.kind == "llm-yes-no":  # decoders: mlx-lm's model implementations
                    from reranker_server.backends.mlx_lm_backend import MlxLmBackend

                    backend: type[Backend] = MlxLmBackend
                else:
                    from reranker_server.backends.mlx_backend import MlxBackend

                    backend = MlxBackend
            except ImportError as exc:
                raise ImportError(f"MLX is not installed ({exc}); pip install 'reranker-fleet[mlx]'") from exc
            return backend(checkpoint, dtype=dtype_for("mlx"), quantize_bits=settings.mlx_quantize_bits)  # type: ignore[call-arg]
        if target == "cuda" and not platform.cuda:
            raise RuntimeError("CUDA is not available to torch")
        if target == "mps" and not platform.mps:
            raise RuntimeError("MPS is not available to torch")
        from reranker_server.backends.torch_backend import TorchBackend
        from reranker_server.model.hardware import cpu_quota

        dtype, threads = dtype_for(target), settings.torch_threads or cpu_quota()
        engine = cpu_engine(settings.engine, checkpoint.kind, dtype, onnxruntime_available()) if target == "cpu" else ""
        if engine == "onnxruntime":
            from reranker_server.backends.onnx.backend import OnnxRuntimeBackend

            try:
                return OnnxRuntimeBackend(checkpoint, dtype=dtype, threads=threads, cache_dir=settings.onnx_cache_dir)
            except Exception as exc:  # an architecture the exporter can't take: torch serves it
                if settings.engine == "onnxruntime":
                    raise
                logger.warning("ONNX Runtime can't run %s (%s: %s); using PyTorch", checkpoint.model_id,
                               type(exc).__name__, exc)  # fmt: skip
        return TorchBackend(checkpoint, device=target, dtype=dtype, threads=threads)

    return load_target
