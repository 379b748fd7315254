import asyncio

import pytest

from reranker_server.api.routes.rerank import http_error
from reranker_server.core.problems import Draining, Overloaded
from reranker_server.serving.admission import Admission


async def test_bounded_in_progress_and_queue_then_429() -> None:
    admission = Admission(max_parallel=2, max_queue=1)
    release = asyncio.Event()
    entered: list[int] = []

    async def request(i: int) -> None:
        async with admission.slot():
            entered.append(i)
            await release.wait()

    tasks = [asyncio.create_task(request(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert (admission.in_progress, admission.waiting) == (2, 1)
    with pytest.raises(Overloaded) as refused:
        async with admission.slot():
            pass
    answer = http_error(refused.value, "documents")
    assert answer.status == 429 and answer.headers() == {"Retry-After": "1"}
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == [0, 1, 2]
    assert (admission.in_progress, admission.waiting) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    admission = Admission(max_parallel=1, max_queue=5)
    hold = asyncio.Event()

    async def holder() -> None:
        async with admission.slot():
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    assert admission.waiting == 1
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert admission.waiting == 0
    hold.set()
    await first
    assert admission.in_progress == 0


async def test_draining_refuses_with_503() -> None:
    admission = Admission(max_parallel=1, max_queue=1)
    admission.draining = True
    with pytest.raises(Draining) as refused:
        async with admission.slot():
            pass
    assert http_error(refused.value, "documents").status == 503
