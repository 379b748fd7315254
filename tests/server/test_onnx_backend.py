"""ENGINE: ONNX Runtime runs encoder checkpoints on CPUs (the default there), PyTorch the rest.

Parity is checked against the PyTorch backend on ragged batches of shapes the export never saw
(the export traces one small batch with padding; a graph that baked in its shape, or dropped the
attention mask, would fail here). No speed is asserted: benchmarks/run_benchmark.py measures it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from reranker_server.backends import pad
from reranker_server.backends import selection as selection_module
from reranker_server.backends.selection import cpu_engine
from reranker_server.encoding import Sequence
from reranker_server.model import CALIBRATION_DOCUMENTS, CALIBRATION_QUERIES, load_model
from reranker_server.scoring import spearman
from reranker_server.settings import Settings
from reranker_server.tasks import ScoreOptions


@pytest.mark.parametrize(
    ("engine", "kind", "dtype", "installed", "chosen"),
    [
        ("auto", "cross-encoder", "float32", True, "onnxruntime"),
        ("auto", "bi-encoder", "int8", True, "onnxruntime"),
        ("auto", "cross-encoder", "bfloat16", True, "pytorch"),  # a CPU with native bf16: torch runs it
        ("auto", "llm-yes-no", "float32", True, "pytorch"),
        ("auto", "cross-encoder", "float32", False, "pytorch"),
        ("pytorch", "cross-encoder", "float32", True, "pytorch"),
        ("onnxruntime", "cross-encoder", "int8", True, "onnxruntime"),
    ],
)
def test_engine_choice(engine: str, kind: str, dtype: str, installed: bool, chosen: str) -> None:
    assert cpu_engine(engine, kind, dtype, installed) == chosen


@pytest.mark.parametrize(
    ("kind", "dtype", "installed", "said"),
    [
        ("llm-yes-no", "float32", True, "serves encoders (cross-encoder, bi-encoder), not llm-yes-no"),
        ("cross-encoder", "bfloat16", True, "runs float32 or int8 here, not bfloat16"),
        ("cross-encoder", "float32", False, "onnxruntime is not installed"),
    ],
)
def test_asking_for_onnxruntime_where_it_cannot_run_is_an_error(
    kind: str, dtype: str, installed: bool, said: str
) -> None:
    with pytest.raises(ValueError, match="ENGINE=onnxruntime: ") as raised:
        cpu_engine("onnxruntime", kind, dtype, installed)
    assert said in str(raised.value)


def _ragged_sequences(model: Any) -> list[Sequence]:
    """Pairs of different lengths (so a batch of them has padding), in a shape the export did not trace."""
    documents = [CALIBRATION_DOCUMENTS[i % len(CALIBRATION_DOCUMENTS)] * (1 + i % 3) for i in range(11)]
    sequences = list(model.task.encode("how do plants make food", documents, ScoreOptions()).sequences)
    assert len({len(s) for s in sequences}) > 3
    return sequences


@pytest.mark.parametrize("fixture", ["minilm_cross_dir", "xlmr_cross_dir", "minilm_embed_dir"])
def test_onnxruntime_rows_equal_pytorch_rows(fixture: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    onnx = load_model(Settings(model_name=str(model_dir), dtype="float32", engine="onnxruntime"))
    torch = load_model(Settings(model_name=str(model_dir), dtype="float32", engine="pytorch"))
    assert (onnx.backend.name, torch.backend.name) == ("onnxruntime", "pytorch")
    sequences = _ragged_sequences(torch)
    batch = pad(sequences, torch.encoder.pad_id)
    ours, reference = onnx.backend.forward(batch), torch.backend.forward(batch)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=0)
    # the shortest row alone (no padding at all) scores as it does inside the padded batch
    shortest = min(range(len(sequences)), key=lambda i: len(sequences[i]))
    alone = onnx.backend.forward(pad([sequences[shortest]], torch.encoder.pad_id))
    np.testing.assert_allclose(alone[0], reference[shortest], atol=2e-5, rtol=0)


def test_onnxruntime_int8_ranks_close_to_float32(embedded_model: Any) -> None:
    """ONNX Runtime's int8 (dynamic quantization, as torch's) on the real all-MiniLM-L6-v2 weights:
    close to float32 in order, not equal, so DTYPE=auto keeps it only where it measures agreeing."""
    int8 = load_model(Settings(dtype="int8"))
    assert (int8.backend.name, int8.backend.dtype) == ("onnxruntime", "int8")
    agreement = [
        spearman(int8.score_sync(q, CALIBRATION_DOCUMENTS), embedded_model.score_sync(q, CALIBRATION_DOCUMENTS))
        for q in CALIBRATION_QUERIES
    ]
    assert 0.8 < float(np.mean(agreement)) < 1.0


def test_llm_rerankers_stay_on_pytorch(qwen3_reranker_dir: Path) -> None:
    assert load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32")).backend.name == "pytorch"
    with pytest.raises(RuntimeError, match="ENGINE=onnxruntime: it serves encoders"):
        load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32", engine="onnxruntime"))


def test_an_export_failure_falls_back_to_pytorch_unless_asked_for(
    minilm_cross_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from reranker_server.backends import onnx_backend

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(onnx_backend, "_export", refuse)
    model = load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32"))
    assert model.backend.name == "pytorch"
    assert "ONNX Runtime can't run" in caplog.text and "exporter says no" in caplog.text
    with pytest.raises(RuntimeError, match="exporter says no"):
        load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32", engine="onnxruntime"))
    assert selection_module.onnxruntime_available()


def test_the_server_reports_its_engine(minilm_cross_dir: Path, start_server: Any) -> None:
    for engine in ("onnxruntime", "pytorch"):
        server = start_server({"MODEL_NAME": str(minilm_cross_dir), "DTYPE": "float32", "ENGINE": engine})
        assert httpx.get(f"{server.url}/health").json()["model"]["backend"] == engine
        response = httpx.post(f"{server.url}/v1/rerank", json={"query": "capital of france", "documents": ["a", "b"]})
        assert response.status_code == 200 and len(response.json()["results"]) == 2
        server.stop()
