"""The forward pass alone, per CPU engine: the most pairs/s a server on this machine can approach.

    python benchmarks/engine_ceiling.py [--rounds 5] [--shapes 32x141,20x50] [--repeats 8]

No tokenization, HTTP or batching: one padded batch shape at a time, every engine in a process of
its own (two sessions in one process contend for the cores), engines interleaved round by round.
- onnxruntime float32 and int8: the graphs the server runs (``onnx_export.graph_for``), opened
  as the server opens them.
- openvino float32 (the same fused ONNX graph) and int8 (NNCF post-training quantization of the
  exported graph on random token batches: its speed only, its scores are not checked), when
  ``.cache/peers/openvino`` exists (``make peers``); skipped with the reason otherwise.
Then ONNX Runtime's profiler on the int8 graph: each kernel's share, and the int8 GEMM kernels'
GFLOP/s beside run_benchmark's (d2), one feed-forward GEMM alone: how near the graph runs to what
this CPU's int8 GEMM can do. Model: the MiniLM-L6 cross-encoder of run_benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OPENVINO_PYTHON = Path(os.environ.get("OPENVINO_PYTHON", REPO / ".cache/peers/openvino/bin/python"))
Shape = tuple[int, int]


def feeds(names: list[str], shape: Shape, vocabulary: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One full batch of random token ids (the kernels' time doesn't depend on which ids)."""
    ids = np.random.default_rng(seed).integers(1000, vocabulary, shape).astype(np.int64)
    every = {"input_ids": ids, "attention_mask": np.ones(shape, np.int64), "token_type_ids": np.zeros(shape, np.int64)}
    return {name: every[name] for name in names}


def time_runs(run: Any, repeats: int) -> float:
    """Seconds per run, the median of ``repeats`` after three warm-up runs."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def onnxruntime_session(path: str, threads: int, profile_prefix: str | None = None) -> Any:
    """A session on the graph with the server's options and loading (onnx_backend)."""
    from reranker_server.backends.onnx.backend import open_session, session_options

    options = session_options(threads)
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return open_session(Path(path), options)


def worker(engine: str, path: str, shape: Shape, repeats: int, threads: int, vocabulary: int) -> float:
    """Pairs/s of one engine on one batch shape (runs in the engine's own process)."""
    if engine == "onnxruntime":
        session = onnxruntime_session(path, threads)
        batch = feeds([i.name for i in session.get_inputs()], shape, vocabulary)
        return shape[0] / time_runs(lambda: session.run(None, batch), repeats)
    import openvino as ov

    compiled = ov.Core().compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    batch = feeds([i.any_name for i in compiled.inputs], shape, vocabulary)
    return shape[0] / time_runs(lambda: request.infer(batch), repeats)


def quantize_openvino(source: str, target: str, vocabulary: int) -> None:
    """NNCF's int8 post-training quantization, calibrated on 40 random ragged token batches."""
    import nncf
    import openvino as ov

    rng = np.random.default_rng(0)
    data = []
    for seed in range(40):
        rows, length = int(rng.integers(4, 33)), int(rng.integers(16, 200))
        batch = feeds(["input_ids", "attention_mask", "token_type_ids"], (rows, length), vocabulary, seed)
        batch["attention_mask"][-1, length // 2 :] = 0
        data.append(batch)
    model = ov.Core().read_model(source)
    ov.save_model(nncf.quantize(model, nncf.Dataset(data), model_type=nncf.ModelType.TRANSFORMER), target)


def kernel_ms(events: list[dict[str, Any]], warm_up: int) -> dict[str, float]:
    """Milliseconds per run and op type in an ONNX Runtime profile, the first ``warm_up`` runs left out."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed = starts[warm_up:]
    totals: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= timed[0]:
            totals[event["args"]["op_name"]] += event["dur"] / 1000 / len(timed)
    return dict(totals.most_common())


def int8_profile(path: str, shape: Shape, threads: int, vocabulary: int, runs: int = 10) -> dict[str, float]:
    """Milliseconds per batch per op type of the int8 graph (ONNX Runtime's profiler)."""
    with tempfile.TemporaryDirectory() as scratch:
        session = onnxruntime_session(path, threads, profile_prefix=str(Path(scratch) / "profile"))
        batch = feeds([i.name for i in session.get_inputs()], shape, vocabulary)
        for _ in range(3 + runs):
            session.run(None, batch)
        return kernel_ms(json.loads(Path(session.end_profiling()).read_text()), warm_up=3)


def in_own_process(python: Path, *args: str) -> str:
    done = subprocess.run([str(python), __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{python} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=8, help="timed runs per shape, engine and round")
    parser.add_argument("--shapes", default="32x141,20x50", help="pairs x tokens, comma-separated")
    args = parser.parse_args()
    shapes = [(int(r), int(t)) for r, t in (s.split("x") for s in args.shapes.split(","))]

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_benchmark import flops_per_pair, machine, onnx_gemm_gflops

    from reranker_server.backends.onnx.export import export, graph_for
    from reranker_server.model.checkpoint import inspect
    from reranker_server.model.hardware import cpu_quota
    from tests.model_fixtures import minilm_cross_dir

    print("Machine:", ", ".join(f"{k} {v}" for k, v in machine().items()))
    checkpoint = inspect(str(minilm_cross_dir()), None)
    config, threads = checkpoint.config, cpu_quota()
    vocabulary = int(config["vocab_size"])
    graphs = {f"onnxruntime {d}": (sys.executable, str(graph_for(checkpoint, d))) for d in ("float32", "int8")}
    with tempfile.TemporaryDirectory() as scratch:  # the NNCF graph, for the timed rounds
        if OPENVINO_PYTHON.exists():
            exported, ov_int8 = Path(scratch) / "exported.onnx", Path(scratch) / "int8.xml"
            export(checkpoint, exported)
            in_own_process(OPENVINO_PYTHON, "--quantize-openvino", str(exported), str(ov_int8), str(vocabulary))
            graphs["openvino float32"] = (str(OPENVINO_PYTHON), graphs["onnxruntime float32"][1])
            graphs["openvino int8 (NNCF)"] = (str(OPENVINO_PYTHON), str(ov_int8))
        else:
            print(f"openvino: skipped, no {OPENVINO_PYTHON} (make peers installs it)")

        rates: dict[tuple[str, Shape], list[float]] = {}
        for _ in range(args.rounds):
            for shape in shapes:
                for name, (python, path) in graphs.items():
                    worker_args = [
                        name.split()[0],
                        path,
                        f"{shape[0]}x{shape[1]}",
                        str(args.repeats),
                        str(threads),
                        str(vocabulary),
                    ]
                    rate = float(in_own_process(Path(python), "--worker", *worker_args))
                    rates.setdefault((name, shape), []).append(rate)
    print(f"\nRounds: {args.rounds}, {args.repeats} timed runs each, {threads} threads; pairs/s median [range]:\n")
    print("| engine | " + " | ".join(f"{r} x {t} tokens" for r, t in shapes) + " |")
    print("| --- |" + " ---: |" * len(shapes))
    for name in graphs:
        cells = [rates[name, shape] for shape in shapes]
        print(f"| {name} | " + " | ".join(f"{np.median(c):.1f} [{min(c):.1f}-{max(c):.1f}]" for c in cells) + " |")

    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    alone = onnx_gemm_gflops(hidden, inner)["int8"]
    print(f"\nONNX Runtime's int8 GEMM alone ((d2) of run_benchmark): {alone:.1f} GFLOP/s")
    for rows, tokens in shapes:
        profile = int8_profile(graphs["onnxruntime int8"][1], (rows, tokens), threads, vocabulary)
        total = sum(profile.values())
        model_rate = flops_per_pair(config, tokens) * rows / total / 1e6
        split = ", ".join(f"{op} {100 * ms / total:.1f}%" for op, ms in profile.items() if ms / total >= 0.005)
        print(f"\n{rows} x {tokens} int8: {total:.1f} ms of kernels per batch ({rows / total * 1000:.1f} pairs/s, "
              f"{model_rate:.1f} GFLOP/s of the model's FLOPs); {split}")  # fmt: skip
        # DynamicQuantizeMatMul: the attention output projection and both feed-forward GEMMs
        gemm_flops = 2 * layers * rows * tokens * (hidden**2 + 2 * hidden * inner)
        if "DynamicQuantizeMatMul" in profile:
            rate = gemm_flops / profile["DynamicQuantizeMatMul"] / 1e6
            print(f"  its int8 GEMMs outside attention (DynamicQuantizeMatMul): {rate:.1f} GFLOP/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        engine, path, shape, repeats, threads, vocabulary = sys.argv[2:8]
        rows, tokens = map(int, shape.split("x"))
        print(worker(engine, path, (rows, tokens), int(repeats), int(threads), int(vocabulary)))
    elif sys.argv[1:2] == ["--quantize-openvino"]:
        quantize_openvino(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        print("quantized")
    else:
        main()
