"""``API_PROCESSES=2``: a real server whose HTTP, JSON and tokenization run in two API processes
feeding one engine process (model, batcher, admission, score cache) over a Unix socket.

Each test checks one thing the one-process server does and that must hold across processes:
the same scores, shared batches, one cache, one admission queue, cancellation reaching the
engine, metrics added up, draining on SIGTERM, a failed load, and processes that die.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ServerProcess, leave_mid_request, metric, spawned_processes
from tests.scores import assert_scores_close

pytestmark = pytest.mark.slow

LONG = "Rivers carry water from the hills down to the sea, shaping valleys on the way. " * 6


@pytest.fixture(scope="module")
def server(minilm_cross_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        {"MODEL_NAME": str(minilm_cross_dir), "API_PROCESSES": "2", "BATCH_SIZE": "8"},
        tmp_path_factory.mktemp("server") / "server.log",
    )
    proc.wait_ready()
    yield proc
    proc.stop()


def _requests() -> list[dict[str, Any]]:
    return [
        {"query": f"question {i % 4} about rivers", "texts": [f"doc {j} {i}: " + LONG[: 40 * ((i + j) % 7 + 1)]
                                                              for j in range(3 + i % 6)]}
        for i in range(16)
    ]  # fmt: skip


def _scores(body: Any) -> list[tuple[int, float]]:
    return [(r["index"], r["score"]) for r in body]


async def _each_on_its_own_connection(url: str, bodies: list[dict[str, Any]], path: str = "/rerank") -> list[Any]:
    """New connections, so the kernel spreads them over both API processes."""

    async def one(body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await client.post(path, json=body)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def test_one_supervisor_an_engine_and_two_api_processes(server: ServerProcess) -> None:
    assert len(spawned_processes(server.proc.pid)) == 3
    assert "2 API processes in front of one engine process" in server.log()
    deadline = time.monotonic() + 30  # the second API process attaches a moment after the first
    while server.log().count("]: ready:") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.log().count("]: ready:") == 3  # "[engine]: ready", "[api-0]: ready", "[api-1]: ready"


def test_scores_equal_the_one_process_servers_and_pairs_share_batches(
    server: ServerProcess, start_server: Any, minilm_cross_dir: Path
) -> None:
    single = start_server({"MODEL_NAME": str(minilm_cross_dir), "CACHE_SIZE": "0", "BATCH_SIZE": "8"})
    bodies = [b | {"query": b["query"] + " (shared batches)"} for b in _requests()]  # not in the cache yet
    with httpx.Client(base_url=single.url, timeout=60) as client:
        expected = [_scores(client.post("/rerank", json=b).json()) for b in bodies]
    forwards_before = metric(server, "reranker_forward_seconds_count")
    responses = asyncio.run(_each_on_its_own_connection(server.url, bodies))
    forwards = metric(server, "reranker_forward_seconds_count") - forwards_before
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for want, response in zip(expected, responses, strict=True):
        got = _scores(response.json())
        assert [i for i, _ in got] == [i for i, _ in want]
        for (_, a), (_, b) in zip(want, got, strict=True):
            assert_scores_close(a, b, what="API processes against one process")
    pairs = sum(len(b["texts"]) for b in bodies)
    assert forwards < pairs / 2  # requests from both API processes shared the engine's forward passes


def test_one_score_cache_whichever_process_answers(server: ServerProcess) -> None:
    body = {"query": "a cached question", "texts": ["first document", "second document", "third document"]}
    hits_before = metric(server, 'reranker_cache_hits_total{tier="local"}')
    responses = asyncio.run(_each_on_its_own_connection(server.url, [body] * 8))
    assert {json.dumps(r.json()) for r in responses} == {json.dumps(responses[0].json())}
    # the first computes (others may join its sequences in flight); later ones all hit the engine's cache
    asyncio.run(_each_on_its_own_connection(server.url, [body] * 8))
    hits = metric(server, 'reranker_cache_hits_total{tier="local"}') - hits_before
    assert hits >= 8 * 3
    health = httpx.get(f"{server.url}/health").json()
    assert health["model"]["cache_enabled"] and health["model"]["cache_size"] >= 3


def test_health_info_and_metrics_speak_for_the_whole_server(server: ServerProcess) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "healthy"
    assert health["model"]["backend"] in ("onnxruntime", "pytorch") and health["model"]["kind"] == "cross-encoder"
    assert health["requests"] == {"in_progress": 0, "queued": 0}
    info = httpx.get(f"{server.url}/info").json()
    assert info["dtype"] == "float32" and info["dtype_reason"] == "set by DTYPE"
    assert metric(server, "reranker_ready") == 1
    assert metric(server, "reranker_requests_in_progress") == 0
    text = httpx.get(f"{server.url}/metrics").text
    assert len(re.findall(r"^reranker_model_info\{", text, re.MULTILINE)) == 1


def test_a_client_that_leaves_drops_its_pairs_in_the_engine(server: ServerProcess) -> None:
    body = {"query": "a query nobody waits for", "texts": [f"{i} {LONG}" for i in range(400)]}
    ran = leave_mid_request(server, "/rerank", body)  # the API process cancels its call in the engine
    assert ran < 300, f"{ran} of 400 pairs ran after the client left"
    assert 'endpoint="/rerank",status="499"' in httpx.get(f"{server.url}/metrics").text


def test_admission_is_one_queue_for_every_api_process(start_server: Any, minilm_cross_dir: Path) -> None:
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_PROCESSES": "2", "MAX_PARALLEL_REQUESTS": "1",
                           "MAX_QUEUE_SIZE": "1", "CACHE_SIZE": "0"})  # fmt: skip
    slow = [{"query": f"slow {i}", "texts": [f"{j} {LONG}" for j in range(64)]} for i in range(3)]

    async def flood_and_watch() -> tuple[list[httpx.Response], list[tuple[int, int]]]:
        flood = asyncio.ensure_future(_each_on_its_own_connection(server.url, slow))
        seen = []
        while not flood.done():  # /health from either API process reports the engine's one queue
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                counts = (await client.get("/health")).json()["requests"]
            seen.append((counts["in_progress"], counts["queued"]))
            await asyncio.sleep(0.05)
        return await flood, seen

    responses, seen = asyncio.run(flood_and_watch())
    assert (1, 1) in seen and all(in_progress <= 1 and queued <= 1 for in_progress, queued in seen), seen
    # one scoring, one queued, the third refused: wherever each landed (per process, 2 + 2 would fit)
    assert sorted(r.status_code for r in responses) == [200, 200, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "overloaded" in refused.json()["message"]
    assert httpx.get(f"{server.url}/health").json()["requests"] == {"in_progress": 0, "queued": 0}


def test_an_api_process_that_dies_is_started_again(start_server: Any, minilm_cross_dir: Path) -> None:
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_PROCESSES": "2"})
    engine, _, api = spawned_processes(server.proc.pid)
    os.kill(api, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "starting it again" not in server.log():
        time.sleep(0.2)
    assert "starting it again" in server.log()
    bodies = [{"query": f"after the restart {i}", "texts": ["a", "b"]} for i in range(8)]
    while time.monotonic() < deadline:  # the new process attaches to the engine and serves
        if all(r.status_code == 200 for r in asyncio.run(_each_on_its_own_connection(server.url, bodies))):
            break
        time.sleep(0.5)
    assert all(r.status_code == 200 for r in asyncio.run(_each_on_its_own_connection(server.url, bodies)))
    assert engine in spawned_processes(server.proc.pid) and len(spawned_processes(server.proc.pid)) == 3


def test_an_engine_that_dies_ends_the_server(start_server: Any, minilm_cross_dir: Path) -> None:
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_PROCESSES": "2", "CACHE_SIZE": "0"})
    result: dict[str, Any] = {}

    def in_flight() -> None:
        work = {"query": "in flight when the engine dies", "texts": [f"{i} {LONG}" for i in range(400)]}
        result["response"] = httpx.post(f"{server.url}/rerank", json=work, timeout=120)

    thread = threading.Thread(target=in_flight)
    thread.start()
    time.sleep(0.7)
    os.kill(spawned_processes(server.proc.pid)[0], signal.SIGKILL)  # the engine
    thread.join(timeout=60)
    assert result["response"].status_code == 503  # said as unavailable, not a 500
    assert "the engine process stopped" in result["response"].json()["message"]
    assert server.proc.wait(timeout=60) == 1  # the pod restarts; nothing half-alive answers
    assert "the engine process stopped" in server.log()


def test_a_model_that_cannot_load_ends_the_server_with_its_reason(start_server: Any, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")
    server = start_server({"MODEL_NAME": str(tmp_path / "missing"), "API_PROCESSES": "2",
                           "TERMINATION_MESSAGE_PATH": str(log)}, wait=False)  # fmt: skip
    assert server.proc.wait(timeout=120) == 1
    assert "the model failed to load" in log.read_text() and "missing" in log.read_text()
    assert "starting it again" not in server.log()


def test_redis_gauges_say_what_the_api_processes_last_saw(
    start_server: Any, minilm_cross_dir: Path, redis_server: Any
) -> None:
    # the engine process never sets them: its 0 must not win over the API processes' 1
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_PROCESSES": "2", "ENABLE_DISTRIBUTED": "true",
                           "REDIS_URL": redis_server.url, "RATE_LIMIT_REQUESTS_PER_SECOND": "100"})  # fmt: skip
    assert httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": ["a", "b"]}).status_code == 200
    assert metric(server, "reranker_redis_up") == 1
    assert metric(server, "reranker_rate_limit_shared") == 1
