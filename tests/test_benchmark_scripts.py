"""The benchmark scripts' own machinery runs (CI never runs the benchmarks: they assert no speed).

Small shapes and a loopback stand-in, so a change that breaks a benchmark fails here, not on the
next person's two-hour run.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    """A benchmark script as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_benchmark() -> ModuleType:
    return _script("run_benchmark")


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
    # a timer, not a busy loop: never faster than `every`, and at most one read per tick of the 0.5 s
    # (a loaded CI machine may make fewer: no count below that is asserted, as no speed is)
    assert 2 <= len(samples) <= 7 and elapsed == sorted(elapsed) and 0 <= elapsed[0] < 0.5 and elapsed[-1] <= 1.0
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(elapsed))
    assert [mib for _, mib in samples] == [100.0 + i for i in range(len(samples))]  # one read per tick


@pytest.fixture(scope="module")
def engine_ceiling() -> ModuleType:
    return _script("engine_ceiling")


def test_kernel_times_leave_out_the_warm_up_runs(engine_ceiling: ModuleType) -> None:
    def run(ts: int) -> dict[str, object]:
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 90}

    def kernel(op: str, ts: int, dur: int) -> dict[str, object]:
        return {"cat": "Node", "name": f"{op}_node_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0), kernel("MatMul", 1, 50_000), run(100), kernel("MatMul", 101, 4_000), kernel("Add", 102, 1_000),
              run(200), kernel("MatMul", 201, 2_000), kernel("Add", 202, 1_000)]  # fmt: skip
    assert engine_ceiling.kernel_ms(events, warm_up=1) == {"MatMul": 3.0, "Add": 1.0}


def test_the_int8_graph_is_timed_and_profiled_as_the_server_opens_it(
    engine_ceiling: ModuleType, minilm_cross_dir: Path
) -> None:
    from reranker_server.backends.onnx.export import graph_for
    from reranker_server.model.checkpoint import inspect

    checkpoint = inspect(str(minilm_cross_dir), None)
    graph = str(graph_for(checkpoint, "int8", Path(os.environ["ONNX_CACHE_DIR"])))
    vocabulary = checkpoint.config["vocab_size"]
    assert engine_ceiling.worker("onnxruntime", graph, (2, 8), repeats=2, threads=1, vocabulary=vocabulary) > 0
    profile = engine_ceiling.int8_profile(graph, (2, 8), threads=1, vocabulary=vocabulary, runs=2)
    assert {"DynamicQuantizeMatMul", "QAttention"} <= set(profile) and all(ms >= 0 for ms in profile.values())


@pytest.fixture(scope="module")
def pipeline_ceiling() -> ModuleType:
    return _script("pipeline_ceiling")


def test_the_pipeline_load_generator_reuses_connections_and_counts_its_own_cpu(
    pipeline_ceiling: ModuleType, accepting_url: str, tmp_path: Path
) -> None:
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"query": "q", "texts": ["a"]}\n{"query": "r", "texts": ["b", "c"]}')
    port = int(accepting_url.rsplit(":", 1)[1])
    result = pipeline_ceiling.generate_load([port, port], bodies, concurrency=3, seconds=0.5)
    assert result["failures"] == 0 and len(result["latencies"]) > 3
    assert result["cpu"] > 0 and result["elapsed"] >= 0.5


def test_the_pipeline_counts_the_cores_of_a_cpu_set(pipeline_ceiling: ModuleType) -> None:
    assert [pipeline_ceiling._cores(s) for s in ("0", "0-1", "0-3,8", "2,4")] == [1, 2, 5, 2]


def test_the_tokenizer_baseline_encodes_the_pairs(pipeline_ceiling: ModuleType, minilm_cross_dir: Path) -> None:
    rate = pipeline_ceiling.tokenizer_rate(minilm_cross_dir, [("a query", ["one document", "another one"])], 0.2)
    assert rate > 0
