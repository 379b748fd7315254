"""Admission control: a bounded number of requests in progress and a bounded queue behind them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from reranker_server.core import metrics
from reranker_server.core.problems import Draining, Overloaded


class Admission:
    def __init__(self, max_parallel: int, max_queue: int) -> None:
        self.max_parallel = max_parallel
        self.max_queue = max_queue
        self.in_progress = 0
        self.waiting = 0
        self.draining = False
        self._slots = asyncio.Semaphore(max_parallel)

    def _publish(self) -> None:
        metrics.IN_PROGRESS.set(self.in_progress)
        metrics.QUEUE_DEPTH.set(self.waiting)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.draining:
            metrics.REJECTED.labels(reason="draining").inc()
            raise Draining()
        if self._slots.locked() and self.waiting >= self.max_queue:
            metrics.REJECTED.labels(reason="overloaded").inc()
            raise Overloaded(self.in_progress, self.waiting)
        self.waiting += 1
        self._publish()
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_progress += 1
        self._publish()
        try:
            yield
        finally:
            self.in_progress -= 1
            self._slots.release()
            self._publish()
