"""DTYPE=auto: which dtype each device tries, and the ranking-agreement check that keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reranker_server import model as model_module
from reranker_server.backends.selection import Platform
from reranker_server.model import auto_dtype, load_model
from reranker_server.settings import Settings

LINUX = Platform(apple_silicon=False, mlx_importable=False, cuda=False, mps=False)
MAC = Platform(apple_silicon=True, mlx_importable=True, cuda=False, mps=True)


@pytest.mark.parametrize(
    ("target", "platform", "bf16", "expected"),
    [
        ("cuda", LINUX, False, "float16"),
        ("mps", MAC, False, "float16"),
        ("mlx", MAC, False, "float16"),
        ("mlx", LINUX, False, "float32"),  # mlx[cpu] on Linux: reference kernels, keep float32
        ("cpu", LINUX, True, "bfloat16"),
        ("cpu", LINUX, False, "float32"),
    ],
)
def test_auto_dtype_per_target(target: str, platform: Platform, bf16: bool, expected: str) -> None:
    assert auto_dtype(target, platform, bf16) == expected  # type: ignore[arg-type]


@pytest.mark.slow
def test_bfloat16_is_kept_only_when_rankings_agree(minilm_cross_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pretend this CPU has native bf16 so auto tries it (torch runs bf16 on any CPU, slowly)
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: True)
    settings = Settings(model_name=str(minilm_cross_dir), dtype="auto")
    kept = load_model(settings, platform=LINUX)
    assert "Spearman" in kept.dtype_note
    if kept.backend.dtype == "bfloat16":
        assert kept.dtype_note.startswith("auto: bfloat16 agrees with float32")
    else:
        assert "rejected" in kept.dtype_note

    monkeypatch.setattr(model_module, "AGREEMENT_THRESHOLD", 1.01)  # no dtype can pass this
    rejected = load_model(settings, platform=LINUX)
    assert rejected.backend.dtype == "float32"
    assert rejected.dtype_note.startswith("auto: bfloat16 rejected (Spearman")
