"""Long documents scored in windows of the model's length (``long_documents: chunk``), their raw
scores pooled before the final transform, on every route and model kind.

The models are loaded with MAX_INPUT_LENGTH=48 so a few hundred characters make several windows;
every expected score is computed here by running the backend on each window alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from reranker_server.backends import pad
from reranker_server.core.settings import Settings
from reranker_server.loading.loader import load_model
from reranker_server.model import scoring
from reranker_server.model.encoding import Chunking
from reranker_server.model.tasks import ScoreOptions
from tests.scores import assert_scores_close
from tests.server.helpers import app_client

QUERY = "where do rivers flow"
LONG = " ".join(f"sentence {i} about hills, rain and the weather in the valley." for i in range(30))
SHORT = "Rivers flow into the sea."
WINDOW = 48


@pytest.fixture(scope="module")
def cross(minilm_cross_dir: Path) -> Any:
    return load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32", max_input_length=WINDOW))


@pytest.fixture(scope="module")
def client(cross: Any) -> Iterator[TestClient]:
    with app_client(cross, cache_size=0) as c:
        yield c


def window_raws(model: Any, query: str, document: str, overlap: int = 64, max_chunks: int = 10) -> np.ndarray:
    """Each window's raw score, every window run alone (no batch shared with anything)."""
    encoded = model.task.encode(query, [document], ScoreOptions(chunking=Chunking(overlap, max_chunks)))
    body = encoded.sequences[1:] if model.task.kind == "bi-encoder" else encoded.sequences
    head = encoded.sequences[:1] if model.task.kind == "bi-encoder" else []
    return np.array([model.task.raw(model.backend.forward(pad([*head, s], model.encoder.pad_id)))[0] for s in body])


def test_windows_cover_the_document_with_the_overlap_and_stop_at_the_cap(cross: Any) -> None:
    [windows] = cross.encoder.encode_pair_chunks(QUERY, [LONG], Chunking(overlap=8, max_chunks=100))
    query_and_specials = len(cross.encoder.encode_pairs(QUERY, [""])[0])
    room = WINDOW - query_and_specials
    documents = [list(w.ids[query_and_specials - 1 : -1]) for w in windows]  # [CLS] q [SEP] doc [SEP]
    assert all(len(w) <= WINDOW for w in windows) and len(windows) > 3
    assert all(len(d) == room for d in documents[:-1])
    for earlier, later in itertools.pairwise(documents):
        assert earlier[-8:] == later[:8]  # neighbours share the overlap
    whole = cross.encoder.encode_pair_chunks(QUERY, [LONG], Chunking(overlap=0, max_chunks=100))[0]
    assert sum(len(w) - query_and_specials for w in whole) == len(cross.encoder._tokenizer.encode(LONG).ids) - 2
    capped = cross.encoder.encode_pair_chunks(QUERY, [LONG], Chunking(overlap=8, max_chunks=3))[0]
    assert capped == windows[:3]
    [[alone]] = cross.encoder.encode_pair_chunks(QUERY, [SHORT], Chunking(overlap=8, max_chunks=3))
    assert alone == cross.encoder.encode_pairs(QUERY, [SHORT])[0]  # a short document is one window, unchanged


@pytest.mark.parametrize(("pooling", "pool"), [("max", np.max), ("mean", np.mean), ("first", lambda r: r[0])])
def test_the_documents_score_pools_its_windows_raw_scores(
    client: TestClient, cross: Any, pooling: str, pool: Any
) -> None:
    raws = window_raws(cross, QUERY, LONG, overlap=16)
    body = {"query": QUERY, "texts": [SHORT, LONG], "raw_scores": True, "long_documents": "chunk",
            "chunk_overlap": 16, "chunk_pooling": pooling}  # fmt: skip
    answer = client.post("/rerank", json=body)
    assert answer.status_code == 200, answer.text
    by_index = {r["index"]: r for r in answer.json()}
    assert (by_index[0]["chunks"], by_index[1]["chunks"]) == (1, len(raws))
    assert_scores_close([by_index[1]["score"]], [pool(raws)], what=f"{pooling} of the windows")
    if pooling == "max":  # the best window's score itself
        assert np.min(np.abs(raws - by_index[1]["score"])) < 1e-4
    sigmoid = client.post("/rerank", json=body | {"raw_scores": False}).json()
    assert_scores_close([r["score"] for r in sigmoid if r["index"] == 1], scoring.sigmoid(np.array([pool(raws)])))


def test_cohere_routes_say_how_many_windows_and_bill_what_was_scored(client: TestClient, cross: Any) -> None:
    windows = cross.encoder.encode_pair_chunks(QUERY, [SHORT, LONG], Chunking(64, 10))
    for route in ("/v1/rerank", "/v2/rerank"):
        body = {"query": QUERY, "documents": [SHORT, LONG], "long_documents": "chunk"}
        answer = client.post(route, json=body).json()
        assert {r["index"]: r["chunks"] for r in answer["results"]} == {0: 1, 1: len(windows[1])}
        assert answer["usage"]["total_tokens"] == sum(len(s) for w in windows for s in w)
        plain = client.post(route, json={"query": QUERY, "documents": [SHORT, LONG]}).json()
        assert all("chunks" not in r for r in plain["results"])  # truncated: as before
        assert plain["usage"]["total_tokens"] == 2 * WINDOW - (WINDOW - len(windows[0][0]))


def test_cohere_max_chunks_per_doc_caps_the_windows_and_max_tokens_per_doc_cuts_first(client: TestClient) -> None:
    def chunks(**options: Any) -> int:
        body = {"query": QUERY, "documents": [LONG], "long_documents": "chunk", **options}
        return int(client.post("/v1/rerank", json=body).json()["results"][0]["chunks"])

    assert chunks(max_chunks_per_doc=2) == 2
    assert chunks() == 10  # the server's MAX_CHUNKS_PER_DOC
    assert chunks(max_tokens_per_doc=60, chunk_overlap=0) == 2  # 60 tokens in windows of ~40


def test_the_server_default_chunks_without_asking(cross: Any) -> None:
    with app_client(cross, long_documents="chunk", chunk_pooling="first", max_chunks_per_doc=3) as c:
        [result] = c.post("/v1/rerank", json={"query": QUERY, "documents": [LONG]}).json()["results"]
        assert result["chunks"] == 3
        cut = c.post("/v1/rerank", json={"query": QUERY, "documents": [LONG], "long_documents": "truncate"}).json()
        assert "chunks" not in cut["results"][0]
        # first-window pooling equals the truncated document's score: the first window is the cut
        assert_scores_close([result["relevance_score"]], [cut["results"][0]["relevance_score"]])


def test_chunked_and_truncated_scores_are_cached_apart(cross: Any) -> None:
    with app_client(cross, cache_size=100) as c:
        body = {"query": QUERY, "documents": [LONG], "chunk_pooling": "max"}
        cut = c.post("/v1/rerank", json=body).json()["results"][0]
        chunked = c.post("/v1/rerank", json=body | {"long_documents": "chunk"}).json()["results"][0]
        again = c.post("/v1/rerank", json=body | {"long_documents": "chunk"}).json()["results"][0]
    assert chunked["relevance_score"] != cut["relevance_score"] and again == chunked


@pytest.mark.parametrize(
    ("field", "value"),
    [("chunk_overlap", -1), ("max_chunks_per_doc", 0), ("long_documents", "split"), ("chunk_pooling", "median")],
)
def test_bad_chunking_options_are_a_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    for route, docs in (("/v1/rerank", "documents"), ("/rerank", "texts")):
        answer = client.post(route, json={"query": QUERY, docs: [LONG], field: value})
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text


def test_a_bi_encoder_pools_its_windows_cosines(embedded_model: Any) -> None:
    model = load_model(Settings(dtype="float32", max_input_length=WINDOW))
    raws = window_raws(model, QUERY, LONG)
    with app_client(model, cache_size=0) as c:
        body = {"query": QUERY, "texts": [LONG], "raw_scores": True, "long_documents": "chunk"}
        [result] = c.post("/rerank", json=body).json()
    assert result["chunks"] == len(raws) > 1
    assert_scores_close([result["score"]], [raws.max()])


def test_an_llm_reranker_pools_its_windows(qwen3_reranker_dir: Path) -> None:
    model = load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32"))  # 160 tokens, ~100 its prompt
    raws = window_raws(model, QUERY, LONG, overlap=8)
    with app_client(model, cache_size=0) as c:
        body = {"query": QUERY, "documents": [LONG], "long_documents": "chunk", "chunk_overlap": 8,
                "chunk_pooling": "mean"}  # fmt: skip
        [result] = c.post("/v2/rerank", json=body).json()["results"]
    assert result["chunks"] == len(raws) > 1
    assert_scores_close([result["relevance_score"]], scoring.sigmoid(np.array([raws.mean()])))


def test_an_llm_rerankers_document_is_cut_to_max_tokens_per_doc_before_its_windows(qwen3_model: Any) -> None:
    chunked = ScoreOptions(chunking=Chunking(overlap=0, max_chunks=100))
    room = len(qwen3_model.task.encode(QUERY, [LONG], chunked).sequences[0])  # a full window
    whole = qwen3_model.task.encode(QUERY, [LONG], chunked).chunks[0]
    cut = qwen3_model.task.encode(QUERY, [LONG], ScoreOptions(chunking=Chunking(0, 100), max_tokens_per_doc=100))
    assert whole > cut.chunks[0] > 1 and all(len(s) <= room for s in cut.sequences)
