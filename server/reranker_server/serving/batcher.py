"""Dynamic batching: sequences from every in-flight request share forward passes.

- One inference thread per device runs the forward passes, one at a time.
- While it runs, new sequences pile up; the next batch is cut from them by length (sorted, so
  padding stays small) around the oldest waiting sequence (so long inputs don't starve), within
  ``batch_size`` sequences, ``max_batch_tokens`` padded tokens and a minimum share of real tokens.
- Identical sequences in flight are computed once; a request that gives up (timeout, client
  gone) releases its sequences, and those nobody waits for any more are dropped before they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np

from reranker_server.backends import Backend, pad
from reranker_server.core import metrics
from reranker_server.model.encoding import Sequence
from reranker_server.serving.heap import return_freed_heap

logger = logging.getLogger(__name__)

# A batch grows only while this share of its padded tokens is real (docs/design/cpu-engine.md#decisions).
MIN_FILL = 0.9
# Freed heap goes back to the OS once the queue has been empty this long (docs/design/cpu-engine.md#decisions).
HEAP_TRIM_AFTER = 1.0


class SequenceRunner(Protocol):
    """What a service hands its sequences to: this process's batcher, or the engine process's."""

    async def run(self, sequences: list[Sequence]) -> np.ndarray: ...


@dataclass(eq=False)
class _Call:
    """One ``run``: its jobs in order, and one future done when the last of their rows arrives
    (a future per sequence cost the engine's event loop a third of its time)."""

    jobs: list[_Job]
    future: asyncio.Future[np.ndarray]
    remaining: int = 0

    def row_arrived(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():  # so every job has its row
            self.future.set_result(np.stack([cast(np.ndarray, job.row) for job in self.jobs]))

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass(eq=False)
class _Job:
    sequence: Sequence
    enqueued: float = field(default_factory=time.monotonic)
    calls: list[_Call] = field(default_factory=list)  # who waits for its row (identical sequences run once)
    row: np.ndarray | None = None


class Batcher:
    def __init__(self, backend: Backend, pad_id: int, batch_size: int, max_batch_tokens: int) -> None:
        self._backend = backend
        self._pad_id = pad_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._pending: dict[Sequence, _Job] = {}  # queued, not yet running
        self._running: dict[Sequence, _Job] = {}
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._ran_since_idle = False
        self._trim_due = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in [*self._pending.values(), *self._running.values()]:
            for call in job.calls:
                call.fail(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self, sequences: list[Sequence]) -> np.ndarray:
        """Output rows for ``sequences``, in order. Cancelling this releases them."""
        if not sequences:
            return np.zeros((0, 0), dtype=np.float32)
        call = _Call([], asyncio.get_running_loop().create_future())
        call.jobs = [self._enqueue(s, call) for s in sequences]
        call.remaining = len(call.jobs)
        self._publish()
        self._wakeup.set()
        try:
            return await call.future
        except BaseException:
            self._release(call)
            raise

    def _enqueue(self, sequence: Sequence, call: _Call) -> _Job:
        job = self._running.get(sequence) or self._pending.get(sequence)
        if job is None:
            job = self._pending[sequence] = _Job(sequence)
        job.calls.append(call)
        return job

    def _release(self, call: _Call) -> None:
        for job in call.jobs:
            if call in job.calls:
                job.calls.remove(call)
            if not job.calls and self._pending.get(job.sequence) is job:
                del self._pending[job.sequence]  # nobody waits for it any more: never run
        self._publish()

    def _publish(self) -> None:
        metrics.PENDING_SEQUENCES.set(len(self._pending))

    def _next_batch(self) -> list[_Job]:
        """Cut a batch from the pending jobs: a length-sorted window around the oldest one."""
        jobs = sorted(self._pending.values(), key=lambda j: len(j.sequence))
        if not jobs:
            return []
        anchor = min(range(len(jobs)), key=lambda i: jobs[i].enqueued)
        lo = hi = anchor

        lengths = [len(j.sequence) for j in jobs]

        def fits(lo_: int, hi_: int) -> bool:
            count, padded = hi_ - lo_ + 1, (hi_ - lo_ + 1) * lengths[hi_]
            real = sum(lengths[lo_ : hi_ + 1])
            return count <= self.batch_size and padded <= self.max_batch_tokens and real >= MIN_FILL * padded

        while True:
            grow_left = lo > 0 and fits(lo - 1, hi)
            grow_right = hi + 1 < len(jobs) and fits(lo, hi + 1)
            if grow_left and grow_right:
                # take the neighbour closer in length to the anchor: less padding
                anchor_len = lengths[anchor]
                left_gap = anchor_len - lengths[lo - 1]
                right_gap = lengths[hi + 1] - anchor_len
                grow_right = right_gap < left_gap
                grow_left = not grow_right
            if grow_left:
                lo -= 1
            elif grow_right:
                hi += 1
            else:
                break
        return jobs[lo : hi + 1]

    def _forward(self, sequences: list[Sequence]) -> np.ndarray:
        batch = pad(sequences, self._pad_id)
        started = time.perf_counter()
        rows = self._backend.forward(batch)
        self._backend.release_memory()
        metrics.FORWARD_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(sequences))
        metrics.BATCH_TOKENS.observe(batch.tokens)
        return rows

    async def _off_the_clock(self, loop: asyncio.AbstractEventLoop, work: Callable[[], None], what: str) -> None:
        """On the inference thread, so it never overlaps a forward pass; a batch that arrives
        meanwhile waits for it (a one-token run on ONNX Runtime: about a millisecond)."""
        try:
            await loop.run_in_executor(self._executor, work)
        except asyncio.CancelledError:
            raise
        except Exception:  # memory not given back is no reason to stop serving
            logger.exception("%s failed", what)

    async def _wait_for_work(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until there is work; after a drain, a heap trim first if nothing comes for a while."""
        if self._trim_due:
            self._trim_due = False  # the next drain asks again: no timer per batch while busy
            try:
                await asyncio.wait_for(self._wakeup.wait(), HEAP_TRIM_AFTER)
                return
            except TimeoutError:
                await self._off_the_clock(loop, return_freed_heap, "the heap trim")
        await self._wakeup.wait()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work(loop)
            batch = self._next_batch()
            if not batch:
                self._wakeup.clear()
                if self._ran_since_idle:  # the queue just drained
                    self._ran_since_idle = False
                    self._trim_due = True
                    await self._off_the_clock(loop, self._backend.idle, "the backend's idle hook")
                continue
            self._ran_since_idle = True
            for job in batch:
                del self._pending[job.sequence]
                self._running[job.sequence] = job
            self._publish()
            try:
                rows = await loop.run_in_executor(self._executor, self._forward, [j.sequence for j in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing batch fails its requests, never the loop
                logger.exception("forward pass failed for a batch of %d", len(batch))
                for job in batch:
                    for call in job.calls:
                        call.fail(exc)
            else:
                for job, row in zip(batch, rows, strict=True):
                    job.row = row
                    for call in job.calls:
                        call.row_arrived()
            finally:
                for job in batch:
                    self._running.pop(job.sequence, None)
