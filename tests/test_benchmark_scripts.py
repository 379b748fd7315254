"""The benchmark scripts' own machinery runs (CI never runs the benchmarks: they assert no speed).

Small shapes and a loopback stand-in, so a change that breaks a benchmark fails here, not on the
next person's two-hour run.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_benchmark", REPO / "benchmarks" / "run_benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_onnx_gemm_rates_come_for_both_dtypes(run_benchmark: ModuleType) -> None:
    rates = run_benchmark.onnx_gemm_gflops(hidden=32, inner=64, tokens=64, repeats=2)
    assert set(rates) == {"float32", "int8"} and all(rate > 0 for rate in rates.values())


class _Server:
    """What soak() reads of a server: its URL and its RSS (a counter here)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._rss = itertools.count(100)

    def rss_mib(self) -> float:
        return float(next(self._rss))


def test_the_soak_reads_rss_on_a_timer_during_a_steady_stream(run_benchmark: ModuleType, accepting_url: str) -> None:
    samples = run_benchmark.soak(_Server(accepting_url), 0.5, documents=2, doc_tokens=4, warm_up=0.2, every=0.1)
    elapsed = [t for t, _ in samples]
    assert 4 <= len(samples) <= 7 and elapsed == sorted(elapsed) and 0 <= elapsed[0] < 0.1 and elapsed[-1] <= 0.6
    assert [mib for _, mib in samples] == [100.0 + i for i in range(len(samples))]  # one read per tick
