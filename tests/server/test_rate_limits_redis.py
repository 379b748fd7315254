"""Rate limits across the fleet, against a real redis-server: two servers sharing one key's
budget, a key's own limits, a burst, and a Redis outage during which each server enforces its share."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker_server.serving.fleet_size import FleetSize
from reranker_server.serving.rate_limiter import RateLimiter, key_label
from reranker_server.serving.rate_limits import PAIRS, REQUESTS, Bucket, Level, Limits, take
from tests.conftest import RedisProcess
from tests.processes import ServerProcess

pytestmark = [pytest.mark.redis]


def limiter(url: str | None, limits: Limits, fleet: int = 1, scope: str = "test") -> RateLimiter:
    return RateLimiter(limits, FleetSize(fleet, None), scope, url, timeout=0.2, retry_seconds=0.5)


async def test_the_redis_script_gives_the_answers_of_the_python_bucket(redis_server: RedisProcess) -> None:
    # slow refill, so the two clocks' few milliseconds apart cannot change an answer
    limits = Limits(requests_per_second=0.01, request_burst=3, pairs_per_second=0.5, pair_burst=40)
    shared = limiter(redis_server.url, limits)
    buckets = limits.buckets()
    levels: dict[str, Level] = {}
    for pairs in (10, 25, 1, 8, 30, 2, 1):
        expected = take(levels, tuple((b, 1.0 if b.name == REQUESTS else float(pairs)) for b in buckets), now=0.0)
        got = await shared.admit(b"sk-one", None, pairs)
        assert (got.allowed, got.limit) == (expected.allowed, expected.limit), pairs
        assert got.retry_after == pytest.approx(expected.retry_after, abs=0.2)
        assert got.fleet_wide
    await shared.close()


async def test_a_burst_is_taken_at_once_then_the_key_is_refused_for_its_debt(redis_server: RedisProcess) -> None:
    limits = Limits(pairs_per_second=100, pair_burst=200)
    a, b = limiter(redis_server.url, limits), limiter(redis_server.url, limits)
    assert (await a.admit(b"sk-burst", None, 150)).allowed
    assert (await b.admit(b"sk-burst", None, 50)).allowed  # the other server drew the same bucket
    refused = await a.admit(b"sk-burst", None, 300)
    assert (refused.allowed, refused.limit) == (False, PAIRS)
    assert refused.retry_after == pytest.approx(2.0, abs=0.1)  # 200 tokens (its burst) at 100/s
    assert (await b.admit(b"sk-other", None, 200)).allowed  # each key has its own bucket
    await asyncio.sleep(2.05)
    assert (await a.admit(b"sk-burst", None, 300)).allowed  # a full bucket lets a larger request through
    await a.close()
    await b.close()


async def test_without_redis_each_server_enforces_its_share_and_a_change_of_fleet_size_applies() -> None:
    alone = limiter(None, Limits(requests_per_second=0.01, request_burst=6), fleet=3)
    verdicts = [await alone.admit(None, None, 1) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]  # 6 / 3 servers
    assert not verdicts[-1].fleet_wide and alone.describe()["enforced"] == "local-share"
    alone.fleet.set(1)
    assert Bucket(REQUESTS, 0.01, 6).share(alone.fleet.get()).capacity == 6


async def test_an_outage_falls_back_to_the_share_and_the_fleet_shares_again_once_redis_is_back(
    redis_server: RedisProcess,
) -> None:
    shared = limiter(redis_server.url, Limits(requests_per_second=0.01, request_burst=4), fleet=2)
    assert (await shared.admit(b"sk", None, 1)).fleet_wide
    redis_server.kill()
    started = time.monotonic()
    down = [await shared.admit(b"sk", None, 1) for _ in range(3)]
    assert time.monotonic() - started < 1.0  # one timeout, then no more round trips
    assert [v.allowed for v in down] == [True, True, False] and not down[0].fleet_wide
    assert shared.describe()["last_error"]
    redis_server.start()  # flushed: the key's bucket starts full again
    await asyncio.sleep(0.6)
    back = await shared.admit(b"sk", None, 1)
    assert back.allowed and back.fleet_wide and shared.describe()["enforced"] == "redis"
    await shared.close()


def _metric(url: str, name: str, labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_two_servers_share_a_keys_budget_and_each_enforces_its_share_while_redis_is_down(
    start_server: Any, redis_server: RedisProcess, minilm_cross_dir: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-small requests_per_second=0.02 request_burst=4\nsk-default\n")
    env = {"MODEL_NAME": str(minilm_cross_dir), "REDIS_URL": redis_server.url, "REDIS_RETRY_SECONDS": "30",
           "API_KEY_FILE": str(keys), "RATE_LIMIT_REQUESTS_PER_SECOND": "0.02", "RATE_LIMIT_REQUEST_BURST": "8",
           "FLEET_SIZE": "2"}  # fmt: skip
    a, b = start_server(env), start_server(env)
    body = {"query": "what flows into the sea", "documents": ["a river", "a road"]}

    def post(server: ServerProcess, key: str) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    small = [post(server, "sk-small").status_code for server in (a, b, a, b)]
    assert small == [200, 200, 200, 200]  # its own burst of 4, drawn from both servers
    refused = post(a, "sk-small")
    assert refused.status_code == 429
    assert refused.json()["limit"] == "requests_per_second" and refused.json()["error_type"] == "rate_limited"
    assert "requests_per_second" in refused.json()["message"] and "share" not in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 50
    assert post(b, "sk-small").status_code == 429  # the other server knows too
    default = [post(server, "sk-default").status_code for server in (a, b) * 5]
    assert default == [200] * 8 + [429] * 2  # the Reranker's default burst of 8 for a key without its own

    label = key_label(b"sk-small")
    both = [_metric(s.url, "reranker_rate_limited_requests_total", f'key="{label}",limit="requests_per_second"')
            for s in (a, b)]  # fmt: skip
    assert both == [1.0, 1.0]
    assert _metric(a.url, "reranker_key_pairs_total", f'key="{label}"') == 4.0  # 2 requests x 2 pairs
    assert "sk-small" not in httpx.get(f"{a.url}/metrics").text
    assert httpx.get(f"{a.url}/health").json()["rate_limits"]["enforced"] == "redis"

    redis_server.kill()
    fresh = [post(a, "sk-fresh").status_code]  # not a key: 401 first, whatever Redis does
    assert fresh == [401]
    keys.write_text("sk-small requests_per_second=0.02 request_burst=4\nsk-default\nsk-outage\n")
    time.sleep(1.1)  # the key file is re-read each second
    outage = [post(a, "sk-outage") for _ in range(5)]
    assert [r.status_code for r in outage] == [200] * 4 + [429]  # a's share: 8 / 2 servers
    assert "share" in outage[-1].json()["message"]
    assert httpx.get(f"{a.url}/health").json()["rate_limits"]["enforced"] == "local-share"
    assert "\nreranker_rate_limit_shared 0.0\n" in httpx.get(f"{a.url}/metrics").text
