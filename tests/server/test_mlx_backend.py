"""MLX backend parity with PyTorch on this machine (mlx[cpu]). Inputs stay tiny: the Linux
wheel's reference BLAS is slow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reranker_server.backends import pad
from reranker_server.model import scoring
from tests.scores import MLX_CPU, assert_scores_close

pytestmark = pytest.mark.mlx

QUERY = "cat food"
DOCS = ["cats eat fish", "Paris, France", "", "dogs bark"]


def _batch(model: Any) -> Any:
    if model.checkpoint.kind == "cross-encoder":
        return pad(model.encoder.encode_pairs(QUERY, DOCS), model.encoder.pad_id)
    return pad([s for [s] in model.encoder.encode_texts([QUERY, *DOCS])], model.encoder.pad_id)


@pytest.mark.scores
@pytest.mark.parametrize("fixture", ["minilm_cross_model", "xlmr_cross_model", "embedded_model"])
def test_float32_parity_with_pytorch(fixture: str, request: pytest.FixtureRequest) -> None:
    from reranker_server.backends.mlx_backend import MlxBackend

    model = request.getfixturevalue(fixture)
    batch = _batch(model)
    ours = MlxBackend(model.checkpoint, dtype="float32").forward(batch)
    reference = model.backend.forward(batch)
    assert_scores_close(ours, reference, MLX_CPU)


def test_float16_and_quantized_weights_keep_the_ranking(xlmr_cross_model: Any) -> None:
    from reranker_server.backends.mlx_backend import MlxBackend

    docs = [f"{w} tokens" for w in ("cat", "fish", "river", "Paris", "dog", "sea", "light", "hills")]
    batch = pad(xlmr_cross_model.encoder.encode_pairs(QUERY, docs), xlmr_cross_model.encoder.pad_id)
    reference = scoring.cross_encoder_raw(xlmr_cross_model.backend.forward(batch))
    half = MlxBackend(xlmr_cross_model.checkpoint, dtype="float16")
    assert half.dtype == "float16"
    np.testing.assert_allclose(scoring.cross_encoder_raw(half.forward(batch)), reference, atol=2e-2)
    q8 = MlxBackend(xlmr_cross_model.checkpoint, dtype="float32", quantize_bits=8)
    assert q8.dtype == "float32+q8"
    assert scoring.spearman(scoring.cross_encoder_raw(q8.forward(batch)), reference) > 0.9


def test_mlx_backend_serves_through_the_same_batching_and_cache(xlmr_cross_dir: Any, xlmr_cross_model: Any) -> None:
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model
    from tests.server.helpers import app_client

    model = load_model(Settings(model_name=str(xlmr_cross_dir), use_mlx="true", dtype="float32"))
    assert model.backend.name == "mlx" and model.fallback_reason is None
    with app_client(model) as client:
        served = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
        health = client.get("/health").json()["model"]
    assert health["backend"] == "mlx" and health["device"].startswith("mlx")
    by_index = np.array([next(r["score"] for r in served if r["index"] == i) for i in range(len(DOCS))])
    assert_scores_close(by_index, xlmr_cross_model.score_sync(QUERY, DOCS), MLX_CPU)


LLM_QUERY = "what is the capital of france"
LLM_DOCS = ["Paris is the capital of France.", "The cat sat on the mat.", "Berlin is the capital of Germany.",
            "Rivers flow into the sea.", "no", "yes it is", "Kubernetes schedules containers onto nodes.",
            "Photosynthesis turns light into sugar."]  # fmt: skip


def _llm_batch(model: Any) -> Any:
    from reranker_server.model.tasks import ScoreOptions

    return pad(model.task.encode(LLM_QUERY, LLM_DOCS, ScoreOptions()).sequences, model.encoder.pad_id)


@pytest.mark.scores
def test_llm_reranker_through_mlx_lm_matches_pytorch(qwen3_model: Any) -> None:
    """mlx-lm's Qwen3 implementation and loader, right-padded rows of mixed lengths, float32."""
    from reranker_server.backends.mlx_lm_backend import MlxLmBackend

    batch = _llm_batch(qwen3_model)
    ours = MlxLmBackend(qwen3_model.checkpoint, dtype="float32").forward(batch)
    assert_scores_close(ours, qwen3_model.backend.forward(batch), MLX_CPU)


@pytest.mark.parametrize("bits", [8, 4])
def test_llm_reranker_quantized_through_mlx_lm_keeps_the_ranking(qwen3_model: Any, bits: int) -> None:
    from reranker_server.backends.mlx_lm_backend import MlxLmBackend

    batch = _llm_batch(qwen3_model)
    reference = qwen3_model.backend.forward(batch)[:, 0]
    quantized = MlxLmBackend(qwen3_model.checkpoint, dtype="float32", quantize_bits=bits)
    assert quantized.dtype == f"float32+q{bits}"
    assert np.argsort(-quantized.forward(batch)[:, 0]).tolist() == np.argsort(-reference).tolist()


def test_a_checkpoint_quantized_by_mlx_lm_loads_as_it_is(qwen3_model: Any, tmp_path: Any) -> None:
    from mlx_lm import convert

    from reranker_server.backends.mlx_lm_backend import MlxLmBackend
    from reranker_server.model.checkpoint import inspect

    out = tmp_path / "q4"
    convert(str(qwen3_model.checkpoint.path), mlx_path=str(out), quantize=True, q_group_size=32, q_bits=4)
    checkpoint = inspect(str(out), None)
    assert (checkpoint.kind, checkpoint.template) == ("llm-yes-no", "qwen3")
    backend = MlxLmBackend(checkpoint, dtype="float32")
    assert backend.dtype == "float32+q4"
    batch = _llm_batch(qwen3_model)
    reference = qwen3_model.backend.forward(batch)[:, 0]
    # mlx-lm quantizes the embeddings and the LM head too, so the answer row itself carries 4-bit
    # error: two documents 0.005 apart in float32 may swap; the order otherwise holds
    assert scoring.spearman(backend.forward(batch)[:, 0], reference) >= 0.95


def test_the_server_picks_mlx_lm_for_an_llm_reranker(qwen3_reranker_dir: Any) -> None:
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    model = load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32", device_preference="mlx"))
    assert (model.backend.name, type(model.backend).__name__) == ("mlx", "MlxLmBackend")
    assert model.fallback_reason is None
