"""What this process remembers about each Reranker between handler calls, by uid: one typed
object per Reranker in one registry, forgotten at once when the Reranker goes. A new Reranker
with an old one's name has another uid, so it starts afresh."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from reranker_operator.autoscale.loop import Memory


@dataclass
class RerankerState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reconcile at a time
    last_status: dict[str, Any] | None = None  # the status last written, which the cache may not show yet
    load_progress: dict[str, int] | None = None  # what its model loader last printed
    autoscaler: Memory = field(default_factory=Memory)  # the operator engine's, between its ticks


class Registry:
    def __init__(self) -> None:
        self._by_uid: dict[str, RerankerState] = {}

    def of(self, uid: str) -> RerankerState:
        return self._by_uid.setdefault(uid, RerankerState())

    def forget(self, uid: str) -> None:
        self._by_uid.pop(uid, None)

    def __len__(self) -> int:
        return len(self._by_uid)
