"""Batching logic, with a recording backend standing in for the model (the model is tested elsewhere)."""

import asyncio
import threading

import numpy as np
import pytest

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.model.encoding import Sequence
from reranker_server.serving import batcher as batcher_module
from reranker_server.serving.batcher import Batcher


class RecordingBackend(Backend):
    """Returns each row's token-id sum; records batch shapes; can be held to build a backlog."""

    name, device, dtype = "recording", "cpu", "float32"

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (rows, padded length)
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.events: list[str] = []  # "forward" and "idle", in order
        self.idle_fails = False

    def idle(self) -> None:
        self.events.append("idle")
        if self.idle_fails:
            raise RuntimeError("arena on fire")

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        self.gate.wait(timeout=10)
        if self.fail:
            raise RuntimeError("device on fire")
        self.batches.append(batch.input_ids.shape)
        self.events.append("forward")
        return (batch.input_ids * batch.attention_mask).sum(axis=1, keepdims=True).astype(np.float32)


def seq(length: int, marker: int = 1) -> Sequence:
    return Sequence(tuple([marker] * length), tuple([0] * length))


@pytest.fixture
async def backend_and_batcher():
    backend = RecordingBackend()
    batcher = Batcher(backend, pad_id=0, batch_size=4, max_batch_tokens=64)
    batcher.start()
    yield backend, batcher
    await batcher.stop()


async def test_results_come_back_in_order_and_batches_respect_limits(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    sequences = [seq(n, marker=n) for n in (3, 30, 5, 8, 2, 16, 7, 1, 9, 4)]
    rows = await batcher.run(sequences)
    assert rows[:, 0].tolist() == [n * n for n in (3, 30, 5, 8, 2, 16, 7, 1, 9, 4)]
    for count, length in backend.batches:
        assert count <= 4
        assert count * length <= 64
    assert sum(count for count, _ in backend.batches) == 10  # a large request is split


async def test_concurrent_requests_share_batches_grouped_by_length(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.gate.clear()  # hold the device so a backlog builds
    first = asyncio.create_task(batcher.run([seq(2, marker=9)]))
    await asyncio.sleep(0.05)
    short = [seq(2, marker=i) for i in range(1, 4)]
    long = [seq(12, marker=i) for i in range(1, 4)]
    tasks = [asyncio.create_task(batcher.run([s, t])) for s, t in zip(short, long, strict=True)]
    await asyncio.sleep(0.05)
    backend.gate.set()
    await first
    await asyncio.gather(*tasks)
    # after the held one, the three requests' short pairs ran together and the long ones together
    assert backend.batches[1:] == [(3, 2), (3, 12)]


async def test_identical_sequences_in_flight_run_once(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.gate.clear()
    blocker = asyncio.create_task(batcher.run([seq(1, marker=7)]))
    await asyncio.sleep(0.05)
    same = seq(5, marker=3)
    tasks = [asyncio.create_task(batcher.run([same])) for _ in range(5)]
    await asyncio.sleep(0.05)
    backend.gate.set()
    results = await asyncio.gather(*tasks)
    await blocker
    assert all(r[0, 0] == 15 for r in results)
    assert backend.batches[1:] == [(1, 5)]


async def test_cancelled_requests_are_dropped_before_they_run(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.gate.clear()
    blocker = asyncio.create_task(batcher.run([seq(1, marker=7)]))
    await asyncio.sleep(0.05)
    abandoned = asyncio.create_task(batcher.run([seq(4, marker=i) for i in range(1, 9)]))
    await asyncio.sleep(0.05)
    assert batcher.pending == 8
    abandoned.cancel()
    await asyncio.sleep(0.01)
    assert batcher.pending == 0
    backend.gate.set()
    await blocker
    await asyncio.sleep(0.05)
    assert backend.batches == [(1, 1)]


async def test_shared_sequence_survives_one_waiter_leaving(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.gate.clear()
    blocker = asyncio.create_task(batcher.run([seq(1, marker=7)]))
    await asyncio.sleep(0.05)
    shared = seq(3, marker=2)
    leaver = asyncio.create_task(batcher.run([shared]))
    stayer = asyncio.create_task(batcher.run([shared]))
    await asyncio.sleep(0.05)
    leaver.cancel()
    backend.gate.set()
    await blocker
    assert (await stayer)[0, 0] == 6


async def test_a_failing_forward_fails_its_requests_not_the_batcher(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.fail = True
    with pytest.raises(RuntimeError, match="device on fire"):
        await batcher.run([seq(3)])
    backend.fail = False
    assert (await batcher.run([seq(3)]))[0, 0] == 3


async def test_the_backend_hears_once_when_the_queue_drains(backend_and_batcher) -> None:
    backend, batcher = backend_and_batcher
    backend.gate.clear()  # a backlog: batches back to back, then nothing left
    request = asyncio.create_task(batcher.run([seq(n, marker=n) for n in range(1, 12)]))
    await asyncio.sleep(0.05)
    backend.gate.set()
    await request
    for _ in range(50):
        if "idle" in backend.events:
            break
        await asyncio.sleep(0.01)
    forwards = len(backend.batches)
    assert forwards >= 3 and backend.events == ["forward"] * forwards + ["idle"]  # not between a backlog's batches
    await batcher.run([seq(3)])
    await asyncio.sleep(0.05)
    assert backend.events[-2:] == ["forward", "idle"]


async def test_the_heap_is_trimmed_once_the_queue_has_stayed_empty(
    backend_and_batcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at every drain (at concurrency 1 that is every request, and PyTorch lost 12% to it),
    but once nothing has come for HEAP_TRIM_AFTER seconds."""
    backend, batcher = backend_and_batcher
    trims: list[int] = []
    monkeypatch.setattr(batcher_module, "HEAP_TRIM_AFTER", 0.2)
    monkeypatch.setattr(batcher_module, "return_freed_heap", lambda: trims.append(len(backend.batches)))
    for n in range(1, 6):  # one request at a time, each draining the queue, gaps well under 0.2 s
        await batcher.run([seq(n)])
        await asyncio.sleep(0.02)
    assert trims == [] and backend.events.count("idle") == 5
    await asyncio.sleep(0.4)
    assert trims == [5]
    await asyncio.sleep(0.4)
    assert trims == [5]  # once per quiet spell, not again and again
    await batcher.run([seq(3)])
    await asyncio.sleep(0.4)
    assert trims == [5, 6]


async def test_a_failing_idle_hook_does_not_stop_the_batcher(backend_and_batcher, caplog) -> None:
    backend, batcher = backend_and_batcher
    backend.idle_fails = True
    await batcher.run([seq(3)])
    await asyncio.sleep(0.05)
    assert "idle hook failed" in caplog.text
    rows = await batcher.run([seq(4, marker=2)])
    assert rows[:, 0].tolist() == [8]
