"""Fair use across the fleet: per-API-key token buckets in Redis, this server's share without it.

With ``REDIS_URL`` every server takes from the same buckets, so a key's limit holds however many
pods and machines serve it. Without Redis, or while it errs (the same short timeout and back-off
as the shared cache), each server enforces the limit divided by the fleet's size: the budget
holds as long as the Service spreads a key's requests evenly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import replace
from typing import Any

from reranker_server.core import metrics
from reranker_server.serving.distributed import redacted
from reranker_server.serving.fleet_size import FleetSize
from reranker_server.serving.rate_limits import ALLOWED, REQUESTS, Bucket, Level, Limits, Verdict, take
from reranker_server.serving.redis_buckets import TAKE_SCRIPT, script_args, verdict_of

logger = logging.getLogger(__name__)
ANONYMOUS = "anonymous"  # without API keys, every request shares one budget


def key_label(secret: bytes | None) -> str:
    """What metrics and Redis call a key: a hash, never the key."""
    return hashlib.sha256(secret).hexdigest()[:16] if secret else ANONYMOUS


class RateLimiter:
    def __init__(
        self,
        defaults: Limits,
        fleet: FleetSize,
        scope: str,
        redis_url: str | None = None,
        timeout: float = 0.1,
        retry_seconds: float = 2.0,
        processes: int = 1,  # API processes of this server, each enforcing its part of the share
    ) -> None:
        self.defaults = defaults
        self.fleet = fleet
        self._processes = processes
        self._local: dict[str, dict[str, Level]] = {}
        self._prefix = f"rr:limits:{scope}:"
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._down_until = 0.0
        self.last_error: str | None = None
        self._redis: Any = None
        self._url = redacted(redis_url) if redis_url else None
        if redis_url:
            import redis.asyncio as redis

            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
            )
            self._script = self._redis.register_script(TAKE_SCRIPT)
            self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, asyncio.TimeoutError)
        metrics.RATE_LIMIT_SHARED.set(1 if redis_url else 0)

    async def admit(self, key: bytes | None, own: Limits | None, pairs: int) -> Verdict:
        label = key_label(key)
        metrics.KEY_REQUESTS.labels(key=label).inc()
        limits = self.defaults.overridden_by(own) if own else self.defaults
        buckets = tuple((b, 1.0 if b.name == REQUESTS else float(pairs)) for b in limits.buckets())
        verdict = await self._take(label, buckets) if buckets else ALLOWED
        if verdict.allowed:
            metrics.KEY_PAIRS.labels(key=label).inc(pairs)
        else:
            metrics.RATE_LIMITED.labels(key=label, limit=verdict.limit or "").inc()
        return verdict

    async def _take(self, label: str, buckets: tuple[tuple[Bucket, float], ...]) -> Verdict:
        if self._redis is not None and time.monotonic() >= self._down_until:
            try:
                reply = await asyncio.wait_for(
                    self._script(keys=[self._prefix + label], args=script_args(buckets)), self._timeout
                )
            except self._errors as exc:
                self._failed(exc)
            else:
                if self.last_error is not None:
                    logger.info("redis is back: rate limits are shared by the fleet again")
                self.last_error = None
                metrics.RATE_LIMIT_SHARED.set(1)
                return verdict_of(reply, buckets)
        fleet = self.fleet.get()
        shares = tuple((bucket.share(fleet * self._processes), cost) for bucket, cost in buckets)
        return replace(take(self._local.setdefault(label, {}), shares, time.monotonic()), fleet_wide=False)

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_seconds
        self.last_error = f"{type(exc).__name__}: {exc}"
        metrics.RATE_LIMIT_SHARED.set(0)
        metrics.REDIS_ERRORS.labels(operation="rate_limit").inc()
        logger.warning("redis rate limiting failed (%s); this server enforces its share (1/%d) for %.0fs",
                       exc, self.fleet.get(), self._retry_seconds)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        shared = self._redis is not None and self.last_error is None and time.monotonic() >= self._down_until
        return {
            "defaults": {k: v for k, v in vars(self.defaults).items() if v is not None},
            "enforced": "redis" if shared else "local-share",
            "redis": self._url,
            "fleet_size": self.fleet.get(),
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
