"""API keys: the 401/200 matrix, rotation through a mounted file, probes left open, the Cohere
SDK's header shape, and the bundled client and bench sending the key."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from reranker_client.client import RerankerClient, RerankError

from reranker_server.api.auth import ApiKeys
from tests.server.helpers import app_client

BODY = {"query": "capital of France", "documents": ["Paris is in France.", "Cats purr."]}
ROUTES = [("post", "/v1/rerank", BODY), ("post", "/v2/rerank", BODY),
          ("post", "/rerank", {"query": "q", "texts": ["a"]}), ("get", "/info", None)]  # fmt: skip
OPEN = ["/health", "/ready", "/live", "/metrics", "/openapi.json"]


def call(client: Any, method: str, path: str, body: Any, key: str | None, scheme: str = "Bearer") -> Any:
    headers = {"Authorization": f"{scheme} {key}"} if key is not None else {}
    return client.request(method, path, json=body, headers=headers)


def test_the_matrix(minilm_cross_model: Any) -> None:
    with app_client(minilm_cross_model, api_key="k-one, k-two") as client:
        for method, path, body in ROUTES:
            for key, status in ((None, 401), ("wrong", 401), ("", 401), ("k-one", 200), ("k-two", 200)):
                response = call(client, method, path, body, key)
                assert response.status_code == status, (path, key, response.text)
                if status == 401:
                    assert response.json()["error_type"] == "unauthorized"
                    assert response.headers["www-authenticate"] == "Bearer"
            # the Cohere SDK writes the scheme as "bearer"; a key under another scheme is no key
            assert call(client, method, path, body, "k-one", scheme="bearer").status_code == 200
            assert call(client, method, path, body, "k-one", scheme="Basic").status_code == 401
        for path in OPEN:  # probes and scrapes need no key
            assert client.get(path).status_code == 200, path


def test_metrics_behind_the_key_when_asked(minilm_cross_model: Any) -> None:
    with app_client(minilm_cross_model, api_key="k", metrics_require_key=True) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer k"}).status_code == 200
        assert client.get("/health").status_code == 200


def test_without_keys_everything_is_open(minilm_cross_model: Any) -> None:
    with app_client(minilm_cross_model) as client:
        for method, path, body in ROUTES:
            assert call(client, method, path, body, None).status_code == 200


def test_rotation_through_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reranker_server.api.auth._RECHECK_SECONDS", 0.0)
    path = tmp_path / "keys"
    path.write_text("# mounted from a Secret\nold\n")
    keys = ApiKeys(None, path)
    assert keys.accepts("old") and not keys.accepts("new")
    path.write_text("old\nnew\n")  # step 1: add the new key
    os.utime(path, (time.time() + 1, time.time() + 1))
    assert keys.accepts("old") and keys.accepts("new")
    path.write_text("new\n")  # step 2: retire the old one
    os.utime(path, (time.time() + 2, time.time() + 2))
    assert keys.accepts("new") and not keys.accepts("old")
    path.unlink()  # a Secret being swapped: the last keys hold
    assert keys.accepts("new")
    assert not keys.accepts(None) and not keys.accepts("")


def test_an_empty_key_file_refuses_everything(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("\n")
    keys = ApiKeys(None, path)
    assert keys.enabled and not keys.accepts("") and not keys.accepts("anything")


def test_a_missing_key_file_is_a_setting_error(tmp_path: Path) -> None:
    from reranker_server.core.settings import Settings

    with pytest.raises(ValueError, match="API_KEY_FILE: no such file"):
        Settings(api_key_file=tmp_path / "nope")


@pytest.mark.slow
def test_bundled_client_and_bench_send_the_key(start_server: Any, minilm_cross_dir: Path, capsys: Any) -> None:
    from reranker_client import bench

    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_KEY": "s3cret"})
    with RerankerClient(server.url, max_retries=0) as anonymous, pytest.raises(RerankError) as refused:
        anonymous.rerank("q", ["a"])
    assert refused.value.status == 401
    with RerankerClient(server.url, api_key="s3cret") as client:
        assert len(client.rerank("q", ["a", "b"])) == 2
    bench.main(["--url", server.url, "-n", "2", "-d", "2", "-l", "8", "--no-progress", "--api-key", "s3cret",
                "--json"])  # fmt: skip
    assert '"ok": 2' in capsys.readouterr().out
