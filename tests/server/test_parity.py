"""Scores equal the reference implementation (sentence-transformers) on real checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.scores import ACROSS_ENGINES, assert_scores_close
from tests.server.helpers import app_client

pytestmark = pytest.mark.slow

QUERY = "how do plants turn sunlight into food"
DOCS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The stock market fell sharply on Tuesday.",
    "Chlorophyll absorbs red and blue light.",
    "",
    "Plants " + "grow toward the light and store energy as starch. " * 60,  # truncated to 512 tokens
    "Le chat dort sur le canapé.",
    "a",
]


def _served_scores(model: Any, endpoint: str = "/v1/rerank", raw: bool = False) -> np.ndarray:
    with app_client(model) as client:
        if endpoint == "/rerank":
            ranks = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": raw}).json()
            by_index = {r["index"]: r["score"] for r in ranks}
        else:
            results = client.post(endpoint, json={"query": QUERY, "documents": DOCS}).json()["results"]
            by_index = {r["index"]: r["relevance_score"] for r in results}
    return np.array([by_index[i] for i in range(len(DOCS))])


@pytest.mark.scores
@pytest.mark.parametrize("fixture", ["minilm_cross", "xlmr_cross"])
@pytest.mark.parametrize("endpoint", ["/v1/rerank", "/rerank"])
def test_cross_encoder_scores_equal_sentence_transformers(
    fixture: str, endpoint: str, request: pytest.FixtureRequest
) -> None:
    from sentence_transformers import CrossEncoder

    model_dir: Path = request.getfixturevalue(f"{fixture}_dir")
    model = request.getfixturevalue(f"{fixture}_model")
    reference = CrossEncoder(str(model_dir), device="cpu").predict([(QUERY, d) for d in DOCS], batch_size=3)
    ours = _served_scores(model, endpoint)
    assert_scores_close(ours, reference, ACROSS_ENGINES)
    assert len(set(np.round(reference, 6))) > 3  # the fixture's scores really differ


@pytest.mark.scores
def test_bi_encoder_scores_equal_sentence_transformers_cosine(embedded_model: Any, minilm_embed_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_embed_dir), device="cpu")
    embeddings = st.encode([QUERY, *DOCS], convert_to_numpy=True)
    norms = np.linalg.norm(embeddings, axis=1)
    reference = embeddings[1:] @ embeddings[0] / (norms[1:] * norms[0])
    assert reference.min() < 0  # the case the normalization is for
    # TEI raw_scores: the cosine itself; Cohere routes and plain /rerank: (cosine + 1) / 2, in 0..1
    assert_scores_close(_served_scores(embedded_model, "/rerank", raw=True), reference, ACROSS_ENGINES)
    for endpoint in ("/v1/rerank", "/v2/rerank", "/rerank"):
        served = _served_scores(embedded_model, endpoint)
        assert_scores_close(served, (reference + 1) / 2, ACROSS_ENGINES)
        assert served.min() >= 0 and served.max() <= 1


def test_embedded_default_ranks_sensibly(embedded_model: Any) -> None:
    cases = {
        "what is the capital of France": (
            "Paris is the capital and most populous city of France.",
            ["The mitochondria is the powerhouse of the cell.", "Bananas are rich in potassium."],
        ),
        "how to bake bread": (
            "Mix flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
            ["The Pacific is the largest ocean on Earth.", "Kubernetes schedules pods onto nodes."],
        ),
        "symptoms of the flu": (
            "Influenza causes fever, cough, sore throat, muscle aches and fatigue.",
            ["The Eiffel Tower is 330 metres tall.", "Jazz originated in New Orleans."],
        ),
    }
    with app_client(embedded_model) as client:
        for query, (relevant, irrelevant) in cases.items():
            results = client.post("/v1/rerank", json={"query": query, "documents": [*irrelevant, relevant]}).json()
            assert results["results"][0]["index"] == len(irrelevant), (query, results)
            assert results["results"][0]["relevance_score"] > results["results"][1]["relevance_score"] + 0.1
