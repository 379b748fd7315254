"""The float32 graph runs ONNX Runtime's fused transformer kernels, and only where they check out.

Rows of the fused graph against PyTorch's are compared in test_onnx_backend.py (ragged batches,
MiniLM, XLM-R and a bi-encoder); here: that the fusions happened, that a fusion which changes the
rows or fails is dropped for the exported graph, and how int8 weights are quantized.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from reranker_server.backends import pad
from reranker_server.backends.onnx import export as onnx_export
from reranker_server.backends.onnx import fusion as onnx_fusion
from reranker_server.backends.onnx.backend import OnnxRuntimeBackend, open_session
from reranker_server.loading.calibration import CALIBRATION_DOCUMENTS
from reranker_server.model.checkpoint import Checkpoint, inspect
from reranker_server.model.encoding import Encoder
from reranker_server.model.tasks import ScoreOptions, task_for
from tests.scores import ACROSS_ENGINES, assert_scores_close


def _ops(graph: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(graph), load_external_data=False).graph.node)


def _ragged_batch(checkpoint: Checkpoint) -> Any:
    encoder = Encoder(checkpoint)
    documents = [d * (1 + i % 3) for i, d in enumerate(CALIBRATION_DOCUMENTS)]
    return pad(task_for(checkpoint, encoder).encode("how do plants make food", documents, ScoreOptions()).sequences,
               encoder.pad_id)  # fmt: skip


@pytest.mark.parametrize("fixture", ["minilm_cross_dir", "xlmr_cross_dir"])
def test_the_float32_graph_runs_one_attention_kernel_per_layer(
    fixture: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    checkpoint = inspect(str(request.getfixturevalue(fixture)), None)
    graph = onnx_export.graph_for(checkpoint, "float32", cache_dir=tmp_path)
    ops = _ops(graph)
    assert ops["Attention"] == checkpoint.config["num_hidden_layers"]
    # residual Add + LayerNorm stay two kernels: ONNX Runtime's fused one measured slower
    assert ops["LayerNormalization"] >= 2 * checkpoint.config["num_hidden_layers"]  # + XLM-R's embeddings
    assert "SkipLayerNormalization" not in ops
    # the sdpa export's NaN guard (Where(IsNaN) over every attention score) is gone with the eager export
    assert "IsNaN" not in ops
    assert sorted(p.name for p in graph.parent.iterdir()) == [onnx_export.GRAPH_FILE]  # no leftovers


def test_a_fusion_that_changes_the_rows_is_dropped(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = inspect(str(minilm_cross_dir), None)
    # made before the patch below (and in its own cache: a graph made under it would be unfused)
    fused = OnnxRuntimeBackend(checkpoint, "float32", cache_dir=tmp_path / "fused")
    real_rows = onnx_fusion._rows

    def fused_rows_off_by_a_little(path: Path, config: dict[str, Any]) -> list[np.ndarray]:
        rows = real_rows(path, config)
        return rows if path.parent.name == "exported" else [r + 1e-3 for r in rows]

    monkeypatch.setattr(onnx_fusion, "_rows", fused_rows_off_by_a_little)
    graph = onnx_export.graph_for(checkpoint, "float32", cache_dir=tmp_path / "unfused")
    assert "disagrees with the exported one: not used" in caplog.text
    assert _ops(graph)["Attention"] == 0 and sorted(p.name for p in graph.parent.iterdir()) == [graph.name]
    # the exported graph serves, with the fused one's rows
    batch = _ragged_batch(checkpoint)
    unfused = OnnxRuntimeBackend(checkpoint, "float32", cache_dir=tmp_path / "unfused").forward(batch)
    assert_scores_close(unfused, fused.forward(batch), ACROSS_ENGINES)


def test_an_optimizer_that_fails_leaves_the_exported_graph(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from onnxruntime.transformers import optimizer

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("an architecture the optimizer does not know")

    monkeypatch.setattr(optimizer, "optimize_model", refuse)
    graph = onnx_export.graph_for(inspect(str(minilm_cross_dir), None), "float32", cache_dir=tmp_path)
    assert "fusions failed" in caplog.text and "an architecture the optimizer does not know" in caplog.text
    assert _ops(graph)["Attention"] == 0 and _ops(graph)["MatMul"] > 0


@pytest.mark.parametrize(("reduced", "largest"), [(True, 64), (False, 127)])
def test_int8_weights_are_7_bit_on_cpus_without_vnni(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reduced: bool, largest: int
) -> None:
    """vpmaddubsw (AVX2/AVX-512 without VNNI) saturates its 16-bit sums on full-range int8
    weights; ONNX Runtime's advice there is 7-bit weights. Each row gets its own scale."""
    monkeypatch.setattr(onnx_export, "int8_needs_reduced_range", lambda: reduced)
    checkpoint = inspect(str(minilm_cross_dir), None)
    graph = onnx.load(str(onnx_export.graph_for(checkpoint, "int8", cache_dir=tmp_path)))
    weights = [numpy_helper.to_array(t) for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    matrices = [w for w in weights if w.ndim == 2]
    assert matrices and max(int(np.abs(w).max()) for w in matrices) == largest
    scales = [numpy_helper.to_array(t) for t in graph.graph.initializer if t.name.endswith("_scale")]
    assert any(s.ndim == 1 and s.size > 1 for s in scales)  # per output channel
    other = onnx_export.graph_key(checkpoint, "int8")
    monkeypatch.setattr(onnx_export, "int8_needs_reduced_range", lambda: not reduced)
    assert onnx_export.graph_key(checkpoint, "int8") != other  # a node of the other kind quantizes its own


def test_the_session_does_not_fuse_the_residual_layer_norms_back(minilm_cross_dir: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    graph = onnx_export.graph_for(inspect(str(minilm_cross_dir), None), "float32", cache_dir=tmp_path)
    loaded = {}
    for name, open_ in (("ours", open_session),
                        ("default", lambda path, options: ort.InferenceSession(str(path), options))):  # fmt: skip
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.onnx")  # the graph as the session runs it
        open_(graph, options)
        loaded[name] = _ops(tmp_path / f"{name}.onnx")
    assert loaded["default"]["SkipLayerNormalization"] > 0  # what ONNX Runtime does unless told not to
    assert "SkipLayerNormalization" not in loaded["ours"] and loaded["ours"]["Attention"] > 0
