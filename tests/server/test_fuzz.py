"""No input FastAPI accepts reaches a 500: schemathesis over the server's own OpenAPI schema (every
route, bounded examples, in CI), a hypothesis property over the request models, and the cases
that used to fail written out."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.processes import ServerProcess
from tests.server.helpers import app_client

# operation -> cases run; printed at the end of the test session (tests/conftest.py)
FUZZ_COUNTS: collections.Counter[str] = collections.Counter()
ERROR_KEYS = {"message", "error", "error_type", "field"}


@pytest.fixture(scope="module")
def client(minilm_cross_model: Any) -> Iterator[TestClient]:
    # small limits: big generated inputs are refused (413) at once instead of costing forward passes
    with app_client(minilm_cross_model, max_documents_per_request=8, max_text_chars=300) as c:
        yield c


@pytest.fixture(scope="module")
def server(minilm_cross_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server on loopback (schemathesis' in-process ASGI calls rerun the lifespan per case)."""
    proc = ServerProcess(
        {"MODEL_NAME": str(minilm_cross_dir), "MAX_DOCUMENTS_PER_REQUEST": "8", "MAX_TEXT_CHARS": "300",
         "ACCESS_LOG": "false"},
        tmp_path_factory.mktemp("fuzz") / "server.log",
    )  # fmt: skip
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.mark.slow
def test_no_request_the_schema_describes_or_mutates_is_a_server_error(server: ServerProcess) -> None:
    """Every operation in /openapi.json: schema-conforming and mutated bodies (wrong types,
    missing fields, odd strings), 40 examples each."""
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/rerank", "/v2/rerank", "/rerank", "/health"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call_and_validate(checks=[not_a_server_error])
            FUZZ_COUNTS[f"schemathesis {case.method} {case.path}"] += 1
            if response.status_code >= 400 and case.path.endswith("rerank"):
                assert set(response.json()) >= ERROR_KEYS, response.text

        run()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates too


@given(
    query=ANY_TEXT | JSON_VALUES,
    documents=st.lists(ANY_TEXT | st.fixed_dictionaries({"text": ANY_TEXT}) | JSON_VALUES, max_size=5)
    | JSON_VALUES,
    extra=st.dictionaries(st.sampled_from(["top_n", "return_documents", "max_tokens_per_doc", "texts",
                                           "raw_scores", "truncate", "truncation_direction"]), JSON_VALUES),
)  # fmt: skip
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_any_json_body_gets_an_answer_not_a_crash(
    client: TestClient, query: Any, documents: Any, extra: dict[str, Any]
) -> None:
    for path, key in (("/v1/rerank", "documents"), ("/rerank", "texts")):
        body = {"query": query, key: documents, **extra}
        # json.dumps keeps lone surrogates as \\udXXX escapes: valid JSON, invalid Unicode
        response = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        FUZZ_COUNTS[f"hypothesis POST {path}"] += 1
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            answer = response.json()
            assert isinstance(answer, dict) and set(answer) >= ERROR_KEYS, (body, response.status_code, answer)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ('{"query": "\\ud800", "documents": ["a"]}', 422, "query"),
        ('{"query": "q", "documents": ["ok", "\\udfff"]}', 422, "documents[1]"),
        ('{"query": "q", "documents": [{"text": "\\udfff"}]}', 422, "documents[0]"),
        ('{"query": "q", "documents": ["' + "[" * 250 + '"]}', 200, None),  # just text
        ('{"query": "q", "documents": ["' + "x" * 301 + '"]}', 413, "documents[0]"),
        ('{"query": "q", "documents": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "body"),  # too deep
        ('{"query": "q", "documents": ["a"], "top_n": 1' + "0" * 5000 + "}", 400, "body"),  # too big a number
        ('{"query": "q", "documents": ["a"], "top_n": 1e308}', 422, "top_n"),
        ('{"query": "a\\u0000b", "documents": ["x\\u0000y"]}', 200, None),  # NUL is a character
    ],
)
def test_the_cases_that_used_to_fail(client: TestClient, body: str, status: int, field: str | None) -> None:
    response = client.post("/v1/rerank", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["field"] == field, response.json()
    # the connection is still good for the next request
    assert client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200


def test_tei_route_names_its_own_field(client: TestClient) -> None:
    response = client.post("/rerank", content=b'{"query": "q", "texts": ["a", "\\ud800"]}',
                           headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 422 and response.json()["field"] == "texts[1]"
