"""The HTTP API in-process (TestClient runs the lifespan), on the real MiniLM cross-encoder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import app_client

QUERY = "what is the capital of France"
DOCS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital and largest city of France.",
    "Cats sleep for most of the day.",
]


@pytest.fixture(scope="module")
def client(minilm_cross_model: Any) -> Iterator[TestClient]:
    with app_client(minilm_cross_model, max_documents_per_request=50, max_text_chars=5000) as c:
        yield c


def test_cohere_v2_shape_sorted_best_first(client: TestClient) -> None:
    body = client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}).json()
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    assert all(0.0 < s < 1.0 for s in scores)  # sigmoid of the logit
    assert "document" not in body["results"][0]
    assert body["meta"]["api_version"]["version"] == "2"
    assert body["meta"]["tokens"]["input_tokens"] == body["usage"]["total_tokens"] > 0
    assert body["id"] and body["model"]


def test_jina_v1_documents_objects_top_n_and_return_documents(client: TestClient) -> None:
    payload = {
        "query": QUERY,
        "documents": [{"text": d} for d in DOCS],
        "top_n": 2,
        "return_documents": True,
    }
    body = client.post("/v1/rerank", json=payload).json()
    assert len(body["results"]) == 2
    for result in body["results"]:
        assert result["document"]["text"] == DOCS[result["index"]]
    full = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert [r["index"] for r in full["results"][:2]] == [r["index"] for r in body["results"]]
    assert client.post("/v1/rerank", json=payload | {"top_n": 99}).json()["results"].__len__() == 3


def test_tei_shape_raw_scores_and_text(client: TestClient) -> None:
    ranks = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True}).json()
    assert [r["score"] for r in ranks] == sorted((r["score"] for r in ranks), reverse=True)
    assert all(r["text"] == DOCS[r["index"]] for r in ranks)
    raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    by_index = {r["index"]: r["score"] for r in raw}
    import math

    for r in ranks:
        assert r["score"] == pytest.approx(1 / (1 + math.exp(-by_index[r["index"]])), abs=1e-9)
    assert "text" not in raw[0]


def test_max_tokens_per_doc_changes_scores_and_is_cached_separately(client: TestClient) -> None:
    long_doc = "Paris is the capital and largest city of France. " + "It has many museums. " * 30
    full = client.post("/v1/rerank", json={"query": QUERY, "documents": [long_doc]}).json()
    cut = client.post("/v1/rerank", json={"query": QUERY, "documents": [long_doc], "max_tokens_per_doc": 5}).json()
    assert full["usage"]["total_tokens"] > cut["usage"]["total_tokens"]
    assert full["results"][0]["relevance_score"] != cut["results"][0]["relevance_score"]


def _pairs_scored(client: TestClient) -> float:
    [line] = [x for x in client.get("/metrics").text.splitlines() if x.startswith("reranker_pairs_scored_total ")]
    return float(line.split()[1])


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/rerank", {"query": QUERY, "documents": []}, "documents"),
        ("/v2/rerank", {"query": QUERY, "documents": []}, "documents"),
        ("/rerank", {"query": QUERY, "texts": []}, "texts"),
    ],
)
def test_no_documents_is_a_422_naming_the_field_and_bills_nothing(
    client: TestClient, path: str, payload: dict[str, Any], field: str
) -> None:
    before = _pairs_scored(client)
    response = client.post(path, json=payload)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and body["message"].startswith(field)
    assert "meta" not in body and "usage" not in body  # nothing billed
    assert _pairs_scored(client) == before


def test_top_n_above_the_number_of_documents_returns_them_all(client: TestClient) -> None:
    body = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 99}).json()
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RerankRequest"]["properties"]
    assert "above the number of documents returns all" in schema["top_n"]["description"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "field"),
    [
        ("/v1/rerank", {"documents": ["a"]}, 422, "query"),
        ("/v1/rerank", {"query": "q"}, 422, "documents"),
        ("/v1/rerank", {"query": "   ", "documents": ["a"]}, 422, "query"),
        ("/v1/rerank", {"query": "q", "documents": "not a list"}, 422, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a", 7]}, 422, "documents"),
        ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 422, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "top_n": -3}, 422, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": -1}, 422, "max_tokens_per_doc"),
        ("/v1/rerank", {"query": "q", "documents": ["a"] * 51}, 413, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a", "b" * 5001]}, 413, "documents[1]"),
        ("/v1/rerank", {"query": "q " * 2600, "documents": ["a"]}, 413, "query"),
        ("/rerank", {"query": "q", "texts": ["a", "word " * 600], "truncate": False}, 413, "texts[1]"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "up"}, 422, "truncation_direction"),
        ("/rerank", {"query": "q " * 600, "texts": ["a"]}, 413, "query"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    client: TestClient, path: str, payload: dict[str, Any], status: int, field: str
) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field
    assert body["message"].startswith(field)
    # and the server keeps serving
    assert client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 200


def test_malformed_json_and_oversized_bodies(client: TestClient, minilm_cross_model: Any) -> None:
    response = client.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    with app_client(minilm_cross_model, max_request_bytes=2048) as small:
        too_big = small.post("/v1/rerank", json={"query": "q", "documents": ["x" * 4096]})
        assert too_big.status_code == 413
        assert "2048" in too_big.json()["message"]


def test_ops_endpoints(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["model"]["backend"] == "onnxruntime"  # ENGINE=auto on a CPU, for an encoder
    assert health["model"]["device"] == "cpu"
    assert health["model"]["dtype"] == "float32"
    assert health["model"]["source"].startswith("local:")
    assert set(health["model"]) >= {"backend", "device", "source", "dtype", "cache_enabled", "cache_size"}
    assert client.get("/ready").status_code == 200
    assert client.get("/live").status_code == 200
    info = client.get("/info").json()
    assert info["max_input_length"] == 512
    assert info["model_kind"] == "cross-encoder"
    assert info["max_batch_size"] == 32 and info["version"]
    assert client.get("/docs").status_code == 200
    assert "/v2/rerank" in client.get("/openapi.json").json()["paths"]


def test_cache_hits_show_in_health_and_metrics(client: TestClient) -> None:
    docs = ["a document only this test sends", "and a second one"]
    before = client.get("/health").json()["model"]["cache_size"]
    first = client.post("/v1/rerank", json={"query": "cache probe", "documents": docs}).json()
    second = client.post("/v1/rerank", json={"query": "cache probe", "documents": docs}).json()
    assert first["results"] == second["results"]
    assert second["usage"] == first["usage"]
    assert client.get("/health").json()["model"]["cache_size"] == before + 2
    text = client.get("/metrics").text
    assert 'reranker_cache_hits_total{tier="local"}' in text


def test_metrics_exposes_the_documented_series(client: TestClient) -> None:
    client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    client.post("/v1/rerank", json={"query": "q"})
    text = client.get("/metrics").text
    for series in (
        'reranker_requests_total{endpoint="/v1/rerank",status="200"}',
        'reranker_requests_total{endpoint="/v1/rerank",status="422"}',
        "reranker_request_duration_seconds_bucket",
        "reranker_requests_in_progress",
        "reranker_queue_depth",
        "reranker_pending_sequences",
        "reranker_batch_size_bucket",
        "reranker_batch_tokens_bucket",
        "reranker_pairs_scored_total",
        "reranker_cache_misses_total",
        "reranker_cache_entries",
        "reranker_model_info{",
        "reranker_ready 1.0",
    ):
        assert series in text, series


ERROR_KEYS = {"message", "error", "error_type", "field"}


def test_unknown_paths_and_methods_answer_in_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v3/rerank")
    assert missing.status_code == 404
    assert set(missing.json()) == ERROR_KEYS and missing.json()["error_type"] == "not_found"
    wrong = client.get("/v1/rerank")
    assert wrong.status_code == 405
    assert set(wrong.json()) == ERROR_KEYS and wrong.json()["error_type"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


def test_invalid_json_names_the_body_and_where(client: TestClient) -> None:
    response = client.post("/v1/rerank", content=b'{"query": "q", "documents": [1,}', headers={"content-type":
                           "application/json"})  # fmt: skip
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "body" and "invalid JSON at character" in body["message"], body
