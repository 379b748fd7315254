"""Backend choice and fallback, on simulated platforms and simulated failures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.backends.selection import Platform, Target, load, plan
from tests.server.helpers import app_client

MAC_WITH_MLX = Platform(apple_silicon=True, mlx_importable=True, cuda=False, mps=True)
MAC_WITHOUT_MLX = Platform(apple_silicon=True, mlx_importable=False, cuda=False, mps=True)
LINUX_GPU = Platform(apple_silicon=False, mlx_importable=False, cuda=True, mps=False)
LINUX_CPU = Platform(apple_silicon=False, mlx_importable=True, cuda=False, mps=False)


@pytest.mark.parametrize(
    ("preference", "use_mlx", "platform", "expected"),
    [
        ("auto", "auto", MAC_WITH_MLX, ["mlx", "mps", "cpu"]),
        ("auto", "false", MAC_WITH_MLX, ["mps", "cpu"]),
        ("auto", "auto", MAC_WITHOUT_MLX, ["mps", "cpu"]),
        ("auto", "auto", LINUX_GPU, ["cuda", "cpu"]),
        ("auto", "auto", LINUX_CPU, ["cpu"]),  # MLX on Linux only when asked for
        ("auto", "true", LINUX_CPU, ["mlx", "mps", "cpu"]),
        ("mlx", "auto", LINUX_GPU, ["mlx", "mps", "cpu"]),
        ("cpu", "auto", LINUX_GPU, ["cpu"]),
        ("cuda", "auto", MAC_WITH_MLX, ["cuda", "cpu"]),
        ("mps", "auto", LINUX_CPU, ["mps", "cpu"]),
    ],
)
def test_plan(preference: str, use_mlx: str, platform: Platform, expected: list[str]) -> None:
    assert plan(preference, use_mlx, platform) == expected


class Named(Backend):
    def __init__(self, target: str) -> None:
        self.name, self.device, self.dtype = "fake", target, "float32"

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        raise NotImplementedError


def failing_loader(failures: dict[str, Exception]) -> Any:
    def loader(target: Target) -> Backend:
        if target in failures:
            raise failures[target]
        return Named(target)

    return loader


def test_mlx_falls_back_to_mps_then_cpu_with_reasons() -> None:
    loader = failing_loader(
        {"mlx": ImportError("No module named 'mlx'"), "mps": RuntimeError("MPS is not available to torch")}
    )
    selection = load(["mlx", "mps", "cpu"], loader)
    assert selection.backend.device == "cpu"
    assert selection.fallback_reason is not None
    assert "mlx: ImportError: No module named 'mlx'" in selection.fallback_reason
    assert "mps: RuntimeError" in selection.fallback_reason


def test_cuda_failing_to_load_the_model_falls_back_to_cpu() -> None:
    selection = load(["cuda", "cpu"], failing_loader({"cuda": RuntimeError("CUDA out of memory")}))
    assert selection.backend.device == "cpu"
    assert selection.fallback_reason == "cuda: RuntimeError: CUDA out of memory"


def test_no_fallback_no_reason_and_total_failure_is_loud() -> None:
    assert load(["cpu"], failing_loader({})).fallback_reason is None
    with pytest.raises(RuntimeError, match="no backend could load the model"):
        load(["cpu"], failing_loader({"cpu": RuntimeError("broken weights")}))


def test_real_fallback_is_reported_in_health_and_info(minilm_cross_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLX asked for on a machine where it can't import: served by torch on the CPU, and said so."""
    import builtins

    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    real_import = builtins.__import__

    def no_mlx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("mlx") or (name == "mlx_backend" or name.endswith(".mlx_backend")):
            raise ImportError("No module named 'mlx'")
        return real_import(name, *args, **kwargs)

    # float32 pinned: on a CPU with native bf16, DTYPE=auto would pick bfloat16 and PyTorch
    settings = Settings(model_name=str(minilm_cross_dir), use_mlx="true", dtype="float32")
    monkeypatch.setattr(builtins, "__import__", no_mlx)
    model = load_model(settings, platform=MAC_WITHOUT_MLX)
    monkeypatch.undo()
    assert (model.backend.name, model.backend.device) == ("onnxruntime", "cpu")  # the CPU's default engine
    with app_client(model) as client:
        health = client.get("/health").json()["model"]
        info = client.get("/info").json()
    assert health["backend"] == "onnxruntime" and health["device"] == "cpu"
    assert "mlx" in health["fallback_reason"] and "reranker-fleet[mlx]" in health["fallback_reason"]
    # the simulated Mac claims MPS, so torch really tried it and failed to load the model there
    assert "mps: RuntimeError" in info["fallback_reason"]


def test_mps_releases_cached_memory_after_each_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from reranker_server.backends.torch_backend import TorchBackend

    calls: list[str] = []
    backend = object.__new__(TorchBackend)
    backend._device = torch.device("mps")
    backend._torch = type("FakeTorch", (), {"mps": type("M", (), {"empty_cache": lambda: calls.append("x")})})
    backend.release_memory()
    assert calls == ["x"]
    backend._device = torch.device("cpu")
    backend.release_memory()
    assert calls == ["x"]
