"""A real reranker-server process on a loopback port: concurrency, overload, timeouts, disconnects,
graceful shutdown and the bundled client."""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reranker_client.client import AsyncRerankerClient, RerankerClient, RerankError

from tests.processes import ServerProcess, leave_mid_request, metric
from tests.scores import assert_scores_close

pytestmark = pytest.mark.slow

LONG = "Rivers carry water from the hills down to the sea, shaping valleys on the way. " * 6


@pytest.fixture(scope="module")
def server(minilm_cross_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        {"MODEL_NAME": str(minilm_cross_dir), "CACHE_SIZE": "0", "BATCH_SIZE": "8"},
        tmp_path_factory.mktemp("server") / "server.log",
    )
    proc.wait_ready()
    yield proc
    proc.stop()


def _mixed_requests() -> list[tuple[str, dict[str, Any]]]:
    requests: list[tuple[str, dict[str, Any]]] = []
    for i in range(16):
        docs = [f"document {j} about topic {i % 5}: " + LONG[: 40 * ((i + j) % 7 + 1)] for j in range(3 + i % 6)]
        query = f"question {i % 4} about rivers and topic {i % 5}"
        if i % 3 == 0:
            requests.append(("/rerank", {"query": query, "texts": docs, "raw_scores": i % 2 == 0}))
        else:
            requests.append((f"/v{1 + i % 2}/rerank", {"query": query, "documents": docs, "top_n": 2 + i % 3}))
    return requests


def _ranking(path: str, body: Any) -> list[tuple[int, float]]:
    if path == "/rerank":
        return [(r["index"], r["score"]) for r in body]
    return [(r["index"], r["relevance_score"]) for r in body["results"]]


def _run_sequential(server: ServerProcess, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return [_ranking(p, client.post(p, json=b).json()) for p, b in requests]


def _run_concurrent(server: ServerProcess, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """All at once, so their pairs share batches."""

    async def fire() -> list[Any]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(*(client.post(p, json=b) for p, b in requests))
        assert all(r.status_code == 200 for r in responses)
        return [_ranking(p, r.json()) for (p, _), r in zip(requests, responses, strict=True)]

    return asyncio.run(fire())


def test_concurrent_mixed_requests_equal_sequential_ones(server: ServerProcess) -> None:
    requests = _mixed_requests()
    sequential = _run_sequential(server, requests)
    forwards_before = metric(server, "reranker_forward_seconds_count")
    concurrent = _run_concurrent(server, requests)
    forwards = metric(server, "reranker_forward_seconds_count") - forwards_before
    sequences = sum(len(b.get("texts", b.get("documents", []))) for _, b in requests)
    for seq_ranking, conc_ranking in zip(sequential, concurrent, strict=True):
        assert [i for i, _ in seq_ranking] == [i for i, _ in conc_ranking]
        for (_, a), (_, b) in zip(seq_ranking, conc_ranking, strict=True):
            assert_scores_close(a, b, what="scores in other batch shapes")
    assert forwards < sequences / 2  # the requests really shared forward passes


# What the README promises for reduced precision: a score may move with the batch it shared,
# by up to this much (raw logits; the Cohere routes' sigmoid moves at most a quarter of it).
# Measured on MiniLM-L6 in bfloat16: 2e-3..4e-3 (one bf16 step at |logit| ~0.25).
REDUCED_PRECISION_TOLERANCE = 1e-2


def test_bfloat16_keeps_rankings_within_the_documented_tolerance(start_server: Any, minilm_cross_dir: Path) -> None:
    # forced, so every CPU runs this path (torch runs bf16 without native support, only slower)
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "CACHE_SIZE": "0", "BATCH_SIZE": "8",
                           "DTYPE": "bfloat16"})  # fmt: skip
    assert httpx.get(f"{server.url}/health").json()["model"]["dtype"] == "bfloat16"
    # every document comes back (no top_n), so a near-tie at the cut can't hide one
    requests = [(p, {k: v for k, v in b.items() if k != "top_n"}) for p, b in _mixed_requests()]
    sequential, concurrent = _run_sequential(server, requests), _run_concurrent(server, requests)
    moved = 0.0
    for seq_ranking, conc_ranking in zip(sequential, concurrent, strict=True):
        alone, shared = dict(seq_ranking), dict(conc_ranking)
        assert alone.keys() == shared.keys()
        for index, score in alone.items():
            moved = max(moved, abs(score - shared[index]))
        # documents further apart than twice the tolerance never swap places
        for i, j in itertools.permutations(alone, 2):
            if alone[i] - alone[j] > 2 * REDUCED_PRECISION_TOLERANCE:
                assert shared[i] > shared[j], (i, j, alone, shared)
    assert moved <= REDUCED_PRECISION_TOLERANCE


def test_client_disconnect_drops_queued_pairs(server: ServerProcess) -> None:
    body = {"query": "a query nobody waits for", "documents": [f"{i} {LONG}" for i in range(400)]}
    ran = leave_mid_request(server, "/v1/rerank", body)
    assert ran < 300, f"{ran} of 400 pairs ran after the client left"
    assert 'endpoint="/v1/rerank",status="499"' in httpx.get(f"{server.url}/metrics").text


def test_sync_and_async_clients(server: ServerProcess) -> None:
    with RerankerClient(server.url) as client:
        ranked = client.rerank("capital of France", ["Cats purr.", "Paris is in France."], return_documents=True)
        assert {r.index for r in ranked} == {0, 1}
        assert ranked[0].text is not None
        with pytest.raises(RerankError) as bad:
            client.rerank("", ["a"])
        assert bad.value.status == 422 and "query" in bad.value.message

    async def use_async() -> int:
        async with AsyncRerankerClient(server.url) as client:
            return len(await client.rerank("q", ["a", "b", "c"], top_n=2))

    assert asyncio.run(use_async()) == 2


def test_overload_gives_only_200s_and_429s(start_server: Any, minilm_cross_dir: Path) -> None:
    server = start_server(
        {"MODEL_NAME": str(minilm_cross_dir), "MAX_PARALLEL_REQUESTS": "1", "MAX_QUEUE_SIZE": "1", "CACHE_SIZE": "0"}
    )
    docs = [f"{i} {LONG}" for i in range(24)]

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/v1/rerank", json={"query": f"q{i}", "documents": docs}) for i in range(12))
            )

    responses = asyncio.run(flood())
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert "overloaded" in response.json()["message"]
    # the bundled client rides out the overload by honouring Retry-After
    with RerankerClient(server.url, max_retries=30, timeout=120) as client:

        def call(i: int, out: list[int]) -> None:
            out.append(len(client.rerank(f"retry {i}", docs[:8])))

        done: list[int] = []
        threads = [threading.Thread(target=call, args=(i, done)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert done == [8, 8, 8, 8]


def test_worker_timeout_gives_504_and_the_server_recovers(start_server: Any, minilm_cross_dir: Path) -> None:
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "WORKER_TIMEOUT": "0.5", "BATCH_SIZE": "4"})
    slow = {"query": "slow", "documents": [f"{i} {LONG * 3}" for i in range(300)]}
    response = httpx.post(f"{server.url}/v1/rerank", json=slow, timeout=60)
    assert response.status_code == 504
    assert "WORKER_TIMEOUT" in response.json()["message"]
    deadline = time.monotonic() + 10
    while metric(server, "reranker_pending_sequences") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "reranker_pending_sequences") == 0  # its work was cancelled
    ok = httpx.post(f"{server.url}/v1/rerank", json={"query": "fast", "documents": ["a"]}, timeout=60)
    assert ok.status_code == 200


@pytest.mark.parametrize("api_processes", ["1", "2"])  # 2: each API process drains, then the engine stops
def test_sigterm_drains_in_flight_work_then_exits(
    start_server: Any, minilm_cross_dir: Path, api_processes: str
) -> None:
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "SHUTDOWN_DELAY": "1.5", "SHUTDOWN_GRACE": "60",
                           "CACHE_SIZE": "0", "API_PROCESSES": api_processes})  # fmt: skip
    work = {"query": "in flight at shutdown", "documents": [f"{i} {LONG}" for i in range(150)]}
    result: dict[str, Any] = {}

    def in_flight() -> None:
        result["response"] = httpx.post(f"{server.url}/v1/rerank", json=work, timeout=120)

    thread = threading.Thread(target=in_flight)
    thread.start()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    for _ in range(4):  # whichever process answers: draining, listener still open
        assert httpx.get(f"{server.url}/ready", timeout=5).status_code == 503
        refused = httpx.post(f"{server.url}/v1/rerank", json={"query": "new", "documents": ["a"]}, timeout=5)
        assert refused.status_code == 503
    thread.join(timeout=120)
    assert result["response"].status_code == 200
    assert len(result["response"].json()["results"]) == 150
    # uvicorn re-raises the captured SIGTERM once it has shut down cleanly
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.log() and "starting it again" not in server.log()
