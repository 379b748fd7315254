"""Distributed mode: a score cache shared by the whole fleet through Redis.

The in-process LRU stays in front; this tier is consulted for its misses, one pipelined round
trip per request. A replica that starts computing a pair sets a short-lived in-flight marker
(SET NX); another replica that needs the same pair meanwhile computes it too, but drops its own
work as soon as the other's score lands in Redis, so it never waits longer than its own
computation and, under load, the queued duplicate never runs.

Redis down, slow or flushed never fails a request: every call has a short timeout, an error
switches the tier off for ``retry_seconds`` (a warning, a metric, /health say so), and then it
is tried again by itself.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any, Protocol

from reranker_server.core import metrics
from reranker_server.serving.cache import CachedScore

logger = logging.getLogger(__name__)
_VALUE = struct.Struct("<dIH")  # raw score (float64) + input tokens + chunks: 14 bytes
_OLD_VALUE = struct.Struct("<dI")  # what servers before chunking wrote: read as one chunk
_POLL_SECONDS = 0.01


class SharedCache(Protocol):
    async def get_many(self, keys: list[bytes]) -> list[CachedScore | None]: ...

    async def claim(self, keys: list[bytes]) -> list[bool]:
        """True where this replica should compute the pair (nobody else is)."""
        ...

    async def wait_for(self, keys: list[bytes]) -> list[CachedScore]:
        """Scores another replica is computing; returns once all have landed (cancel to give up)."""
        ...

    async def put_many(self, items: list[tuple[bytes, CachedScore]], claimed: list[bytes]) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class NoSharedCache:
    """Distributed mode off: every pair is ours to compute."""

    async def get_many(self, keys: list[bytes]) -> list[CachedScore | None]:
        return [None] * len(keys)

    async def claim(self, keys: list[bytes]) -> list[bool]:
        return [True] * len(keys)

    async def wait_for(self, keys: list[bytes]) -> list[CachedScore]:  # pragma: no cover - never claimed
        raise RuntimeError("nothing is computed elsewhere without distributed mode")

    async def put_many(self, items: list[tuple[bytes, CachedScore]], claimed: list[bytes]) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"enabled": False}

    async def close(self) -> None:
        return None


def redacted(url: str) -> str:
    """redis://:secret@host:6379/0 -> redis://***@host:6379/0"""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


class RedisSharedCache:
    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: int,
        timeout: float,
        retry_seconds: float,
        inflight_seconds: float,
    ) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._url = redacted(url)
        self._prefix = f"rr:{namespace}:".encode()
        self._ttl = ttl_seconds
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._inflight_ms = int(inflight_seconds * 1000)
        self._down_until = 0.0
        self.last_error: str | None = None
        metrics.REDIS_UP.set(1)

    def _value_key(self, key: bytes) -> bytes:
        return self._prefix + b"v:" + key.hex().encode()

    def _marker_key(self, key: bytes) -> bytes:
        return self._prefix + b"i:" + key.hex().encode()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_seconds
        self.last_error = f"{operation}: {type(exc).__name__}: {exc}"
        metrics.REDIS_ERRORS.labels(operation=operation).inc()
        metrics.REDIS_UP.set(0)
        logger.warning("redis %s failed (%s); local scoring only for %.0fs", operation, exc, self._retry_seconds)

    def _succeeded(self) -> None:
        if self.last_error is not None:
            logger.info("redis is back")
        self.last_error = None
        metrics.REDIS_UP.set(1)

    async def get_many(self, keys: list[bytes]) -> list[CachedScore | None]:
        if not keys or not self.available:
            return [None] * len(keys)
        try:
            values = await asyncio.wait_for(self._redis.mget([self._value_key(k) for k in keys]), self._timeout)
        except self._errors as exc:
            self._failed("get", exc)
            return [None] * len(keys)
        self._succeeded()
        found = [_unpack(v) for v in values]
        hits = sum(f is not None for f in found)
        metrics.CACHE_HITS.labels(tier="redis").inc(hits)
        metrics.REDIS_MISSES.inc(len(keys) - hits)
        return found

    async def claim(self, keys: list[bytes]) -> list[bool]:
        if not keys or not self.available:
            return [True] * len(keys)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self._marker_key(key), b"1", nx=True, px=self._inflight_ms)
                claimed = await asyncio.wait_for(pipe.execute(), self._timeout)
        except self._errors as exc:
            self._failed("claim", exc)
            return [True] * len(keys)
        return [bool(c) for c in claimed]

    async def wait_for(self, keys: list[bytes]) -> list[CachedScore]:
        found: dict[int, CachedScore] = {}
        while len(found) < len(keys):
            pending = [i for i in range(len(keys)) if i not in found]
            if not self.available:
                await asyncio.sleep(self._retry_seconds)  # the local computation will finish first
                continue
            values = await self.get_many([keys[i] for i in pending])
            for i, value in zip(pending, values, strict=True):
                if value is not None:
                    found[i] = value
            if len(found) < len(keys):
                await asyncio.sleep(_POLL_SECONDS)
        metrics.REDIS_SHARED_COMPUTATIONS.inc(len(keys))
        return [found[i] for i in range(len(keys))]

    async def put_many(self, items: list[tuple[bytes, CachedScore]], claimed: list[bytes]) -> None:
        if not (items or claimed) or not self.available:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(self._value_key(key), _VALUE.pack(value.raw, value.tokens, value.chunks), ex=self._ttl)
                if claimed:
                    pipe.delete(*[self._marker_key(k) for k in claimed])
                await asyncio.wait_for(pipe.execute(), self._timeout)
        except self._errors as exc:
            self._failed("put", exc)

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "backend": "redis",
            "url": self._url,
            "healthy": self.last_error is None and self.available,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        await self._redis.aclose()


def _unpack(value: object) -> CachedScore | None:
    if isinstance(value, bytes) and len(value) == _VALUE.size:
        return CachedScore(*_VALUE.unpack(value))
    if isinstance(value, bytes) and len(value) == _OLD_VALUE.size:
        return CachedScore(*_OLD_VALUE.unpack(value))
    return None
