import httpx
import pytest
from reranker_client import client as client_module
from reranker_client.client import RerankerClient, RerankError, retry_delay

OK = {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}


def scripted(responses: list[httpx.Response | Exception]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def make_client(transport: httpx.MockTransport, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> RerankerClient:
    client = RerankerClient("http://reranker", **kwargs)  # type: ignore[arg-type]
    client._http = httpx.Client(base_url="http://reranker", transport=transport)
    return client


def test_retries_429_and_503_honouring_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", sleeps.append)
    transport, seen = scripted(
        [
            httpx.Response(429, headers={"Retry-After": "2"}, json={"message": "overloaded"}),
            httpx.Response(503, json={"message": "loading"}),
            httpx.ConnectError("refused"),
            httpx.Response(200, json=OK),
        ]
    )
    ranked = make_client(transport, monkeypatch, max_retries=3, backoff=0.1).rerank("q", ["a", "b"], top_n=2)
    assert [r.index for r in ranked] == [1, 0]
    assert len(seen) == 4
    assert sleeps[0] == 2.0  # Retry-After wins over backoff
    assert 0.05 <= sleeps[1] <= 0.2 and 0.1 <= sleeps[2] <= 0.4  # exponential with jitter
    assert b'"top_n":2' in seen[-1].content


def test_gives_up_after_max_retries_with_the_server_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.time, "sleep", lambda _s: None)
    transport, seen = scripted([httpx.Response(429, json={"message": "overloaded"})] * 3)
    with pytest.raises(RerankError, match="HTTP 429: overloaded"):
        make_client(transport, monkeypatch, max_retries=2).rerank("q", ["a"])
    assert len(seen) == 3


def test_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = scripted([httpx.Response(422, json={"message": "query: must not be empty"})])
    with pytest.raises(RerankError) as error:
        make_client(transport, monkeypatch).rerank("", ["a"])
    assert error.value.status == 422 and len(seen) == 1


def test_retry_delay_caps() -> None:
    assert retry_delay(0, httpx.Response(429, headers={"Retry-After": "600"}), 0.1) == 30.0
    assert retry_delay(10, None, 1.0) <= 30.0
