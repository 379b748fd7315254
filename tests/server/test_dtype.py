"""DTYPE=auto: which dtype each device tries, and the ranking-agreement check that keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reranker_server.backends.selection import Platform
from reranker_server.core.settings import Settings
from reranker_server.loading import calibration, dtype_choice
from reranker_server.loading.calibration import auto_dtype
from reranker_server.loading.loader import load_model

LINUX = Platform(apple_silicon=False, mlx_importable=False, cuda=False, mps=False)
MAC = Platform(apple_silicon=True, mlx_importable=True, cuda=False, mps=True)


@pytest.mark.parametrize(
    ("target", "platform", "bf16", "expected"),
    [
        ("cuda", LINUX, False, "float16"),
        ("mps", MAC, False, "float16"),
        ("mlx", MAC, False, "float16"),
        ("mlx", LINUX, False, "float32"),  # mlx[cpu] on Linux: reference kernels, keep float32
        ("cpu", LINUX, True, "float32"),  # then timed against its candidates
        ("cpu", LINUX, False, "float32"),
    ],
)
def test_auto_dtype_per_target(target: str, platform: Platform, bf16: bool, expected: str) -> None:
    assert auto_dtype(target, platform) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("engine", "bf16", "candidates"),
    [
        ("onnxruntime", True, [("int8", "onnxruntime"), ("bfloat16", "pytorch")]),
        ("onnxruntime", False, [("int8", "onnxruntime")]),
        ("pytorch", True, [("int8", "pytorch"), ("bfloat16", "pytorch")]),  # LLM rerankers run on PyTorch
    ],
)
def test_cpu_candidates_run_on_the_engine_that_runs_them(engine: str, bf16: bool, candidates: list[object]) -> None:
    assert calibration.cpu_candidates(engine, bf16) == candidates


@pytest.mark.slow
def test_auto_on_a_native_bf16_cpu_times_every_candidate_and_keeps_the_verdict(
    minilm_cross_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # pretend this CPU has native bf16 so auto tries it (torch runs bf16 on any CPU, slowly)
    monkeypatch.setattr(dtype_choice, "cpu_has_native_bf16", lambda: True)
    settings = Settings(model_name=str(minilm_cross_dir), dtype="auto", onnx_cache_dir=tmp_path)
    chosen = load_model(settings, platform=LINUX)
    note = chosen.dtype_note
    for measured in ("float32/onnxruntime", "int8/onnxruntime", "bfloat16/pytorch"):
        assert measured in note and "pairs/s" in note
    assert note.startswith(f"auto: {chosen.backend.dtype} on {chosen.backend.name}, the fastest")

    # the next start reads the verdict instead of timing again
    monkeypatch.setattr(calibration, "forward_rate", lambda _m: pytest.fail("timed again"))
    again = load_model(settings, platform=LINUX)
    assert (again.backend.dtype, again.backend.name) == (chosen.backend.dtype, chosen.backend.name)
    assert again.dtype_note == f"{note} [measured at an earlier start]"


@pytest.mark.slow
def test_nothing_that_disagrees_with_float32_is_kept(
    minilm_cross_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dtype_choice, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(calibration, "AGREEMENT_THRESHOLD", 1.01)  # no dtype can pass this
    rejected = load_model(Settings(model_name=str(minilm_cross_dir), dtype="auto", onnx_cache_dir=tmp_path))
    assert rejected.backend.dtype == "float32"
    assert rejected.dtype_note.startswith("auto: float32 on onnxruntime") and "disagrees" in rejected.dtype_note
