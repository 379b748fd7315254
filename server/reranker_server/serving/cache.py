"""In-process LRU of scores, keyed by everything that changes a score."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from reranker_server.core import metrics


@dataclass(frozen=True)
class CachedScore:
    raw: float
    tokens: int
    chunks: int = 1  # windows a long document was scored in (1: the document whole, or cut)


def score_key(model_scope: str, variant: str, query: str, document: str) -> bytes:
    """16-byte digest, so the cache's memory doesn't grow with text length.

    ``model_scope`` is model id, revision and max length; ``variant`` the truncation options.
    Lengths are hashed in so that no two (query, document) splits collide.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (model_scope, variant, query, document):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


class ScoreStore(Protocol):
    """Where a service keeps scores: this process's LRU, or the engine process's (``engine.remote``)."""

    @property
    def enabled(self) -> bool: ...

    async def lookup(self, keys: list[bytes]) -> list[CachedScore | None]: ...

    async def store(self, items: list[tuple[bytes, CachedScore]]) -> None: ...


class ScoreCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, CachedScore] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[bytes]) -> list[CachedScore | None]:
        found: list[CachedScore | None] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            found.append(entry)
        hits = sum(entry is not None for entry in found)
        if self.enabled:
            metrics.CACHE_HITS.labels(tier="local").inc(hits)
            metrics.CACHE_MISSES.inc(len(keys) - hits)
        return found

    def put_many(self, items: list[tuple[bytes, CachedScore]]) -> None:
        if not self.enabled:
            return
        for key, value in items:
            self._entries[key] = value
            self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        metrics.CACHE_SIZE.set(len(self._entries))

    async def lookup(self, keys: list[bytes]) -> list[CachedScore | None]:
        return self.get_many(keys)

    async def store(self, items: list[tuple[bytes, CachedScore]]) -> None:
        self.put_many(items)
