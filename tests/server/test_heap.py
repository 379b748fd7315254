"""Freed heap handed back to the OS (the batcher does it once its queue has stayed empty a while)."""

from __future__ import annotations

import pytest

from reranker_server.serving import heap
from tests.processes import rss_mib


def test_freed_heap_goes_back_to_the_os() -> None:
    if heap._libc() is None:
        pytest.skip("not glibc: malloc_trim is glibc's")
    blocks = [bytearray(64 * 1024) for _ in range(4096)]  # 256 MiB in blocks malloc keeps on its heap
    del blocks[:-1]  # the last one pins the top, so only malloc_trim (not free) can give pages back
    before = rss_mib()
    heap.return_freed_heap()
    assert rss_mib() < before - 128
