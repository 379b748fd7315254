"""Distributed mode against a real redis-server: shared hits, in-flight sharing, and Redis down,
slow or flushed never failing a request."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker_server.serving.cache import CachedScore
from reranker_server.serving.distributed import RedisSharedCache
from tests.conftest import RedisProcess
from tests.processes import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def shared(url: str, **overrides: Any) -> RedisSharedCache:
    options: dict[str, Any] = {"namespace": "test", "ttl_seconds": 60, "timeout": 0.2, "retry_seconds": 0.5,
                               "inflight_seconds": 5.0} | overrides  # fmt: skip
    return RedisSharedCache(url, **options)


async def test_values_are_compact_with_a_ttl_and_claims_are_exclusive(redis_server: RedisProcess) -> None:
    import redis.asyncio as redis

    first, second = shared(redis_server.url), shared(redis_server.url)
    keys = [bytes([i]) * 16 for i in range(3)]
    assert await first.claim(keys) == [True, True, True]
    assert await second.claim(keys) == [False, False, False]  # someone is computing them
    await first.put_many([(keys[0], CachedScore(1.25, 17, chunks=3))], claimed=keys)
    assert await second.get_many(keys) == [CachedScore(1.25, 17, 3), None, None]
    assert await second.claim(keys[1:]) == [True, True]  # markers released on put
    client = redis.Redis.from_url(redis_server.url)
    value_key = first._value_key(keys[0])
    assert await client.strlen(value_key) == 14
    assert 0 < await client.ttl(value_key) <= 60
    # a value written by a server from before chunking (a rolling update) reads as one window
    await client.set(first._value_key(keys[1]), struct.pack("<dI", 0.5, 9))
    assert (await second.get_many(keys[1:2])) == [CachedScore(0.5, 9, 1)]
    await client.aclose()
    await first.close()
    await second.close()


async def test_redis_down_or_slow_costs_at_most_its_timeout_and_it_reconnects(redis_server: RedisProcess) -> None:
    cache = shared(redis_server.url, timeout=0.2, retry_seconds=0.5)
    key = b"k" * 16
    await cache.put_many([(key, CachedScore(0.5, 3))], claimed=[])
    redis_server.kill()
    started = time.monotonic()
    assert await cache.get_many([key]) == [None]
    assert time.monotonic() - started < 1.0
    assert cache.describe()["healthy"] is False and "get" in cache.describe()["last_error"]
    assert await cache.claim([key]) == [True]  # down: compute locally, no round trip
    redis_server.start()  # same port, flushed (no persistence)
    await asyncio.sleep(0.6)
    assert await cache.get_many([key]) == [None]  # flushed: a miss, not an error
    assert cache.describe()["healthy"] is True
    await cache.close()

    # a "Redis" that accepts connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        slow = shared(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.1)
        started = time.monotonic()
        assert await slow.get_many([key]) == [None]
        assert time.monotonic() - started < 0.5
        assert slow.describe()["healthy"] is False
        await slow.close()


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE):
        total += float(match.group(1))
    return total


@pytest.fixture
def two_servers(start_server: Any, redis_server: RedisProcess, minilm_cross_dir: Path) -> Iterator[list[Any]]:
    env = {"MODEL_NAME": str(minilm_cross_dir), "ENABLE_DISTRIBUTED": "true", "REDIS_URL": redis_server.url,
           "REDIS_RETRY_SECONDS": "0.5"}  # fmt: skip
    yield [start_server(env), start_server(env)]


def test_two_servers_share_hits(two_servers: list[ServerProcess]) -> None:
    a, b = two_servers
    body = {"query": "what flows into the sea", "documents": [f"river {i} flows into the sea" for i in range(12)]}
    first = httpx.post(f"{a.url}/v1/rerank", json=body, timeout=60).json()
    forwards_before = metric(b, "reranker_forward_seconds_count")
    second = httpx.post(f"{b.url}/v1/rerank", json=body, timeout=60).json()
    assert second["results"] == first["results"]
    assert metric(b, "reranker_forward_seconds_count") == forwards_before  # b computed nothing
    assert metric(b, 'reranker_cache_hits_total{tier="redis"}') >= 12
    assert metric(a, "reranker_redis_misses_total") >= 12
    health = httpx.get(f"{b.url}/health").json()["distributed"]
    assert health["enabled"] and health["healthy"] and "***" not in health["url"]


def test_a_busy_replica_takes_what_another_is_computing_instead_of_computing_it(
    two_servers: list[ServerProcess],
) -> None:
    idle, busy = two_servers
    long_docs = [f"{i} " + "rivers carry water from the hills down to the sea " * 12 for i in range(160)]
    shared_docs = [f"shared document {i}: " + "a river runs through the valley " * 4 for i in range(48)]
    results: dict[str, Any] = {}

    def post(name: str, server: ServerProcess, query: str, docs: list[str]) -> None:
        started = time.monotonic()
        response = httpx.post(f"{server.url}/v1/rerank", json={"query": query, "documents": docs}, timeout=120)
        results[name] = (response, time.monotonic() - started)

    run_before = metric(busy, "reranker_batch_size_sum")
    backlog = threading.Thread(target=post, args=("backlog", busy, "keeps it busy", long_docs))
    backlog.start()
    while metric(busy, "reranker_pending_sequences") == 0:  # its backlog is queued
        time.sleep(0.01)
    first = threading.Thread(target=post, args=("idle", idle, "the shared question", shared_docs))
    first.start()
    time.sleep(0.1)  # the idle replica has claimed the pairs and is computing them
    post("busy", busy, "the shared question", shared_docs)
    first.join()
    backlog.join()
    busy_response, busy_seconds = results["busy"]
    assert busy_response.json()["results"] == results["idle"][0].json()["results"]
    assert busy_seconds < results["backlog"][1]  # it didn't wait for its turn behind the backlog
    # the busy replica forwarded its backlog and none of the shared pairs
    assert metric(busy, "reranker_batch_size_sum") - run_before == len(long_docs)
    assert metric(busy, "reranker_redis_shared_computations_total") == len(shared_docs)


def test_redis_killed_during_a_load_run_fails_no_request(
    two_servers: list[ServerProcess], redis_server: RedisProcess
) -> None:
    a, b = two_servers
    statuses: list[int] = []
    stop = threading.Event()

    def load(server: ServerProcess, worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            i = 0
            while not stop.is_set() and i < 400:
                body = {"query": f"query {worker}-{i % 7}", "documents": [f"doc {j} of {i % 5}" for j in range(6)]}
                statuses.append(client.post("/v1/rerank", json=body).status_code)
                i += 1

    threads = [threading.Thread(target=load, args=(server, w)) for w, server in enumerate([a, b, a, b])]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    redis_server.kill()
    time.sleep(2.0)
    down = httpx.get(f"{a.url}/health").json()["distributed"]
    redis_server.start()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert down["healthy"] is False and down["last_error"]
    assert metric(a, "reranker_redis_errors_total") + metric(b, "reranker_redis_errors_total") > 0
    # it reconnected by itself
    body = {"query": "after the restart", "documents": ["one", "two"]}
    httpx.post(f"{a.url}/v1/rerank", json=body, timeout=60)
    assert httpx.get(f"{a.url}/health").json()["distributed"]["healthy"] is True
    assert metric(a, "reranker_redis_up") == 1.0
