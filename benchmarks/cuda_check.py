"""CUDA check: the server's PyTorch backend on a GPU, against the same checkpoint on the CPU, and
the server over HTTP on the GPU against its own in-process forward pass. Prints figures; run it
where a GPU is (CI has none):

    python benchmarks/cuda_check.py --model DIR [--requests 200 --concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "server"), str(REPO / "contract")]

from reranker_client import bench  # noqa: E402

from reranker_server.backends import pad  # noqa: E402
from reranker_server.core.settings import Settings  # noqa: E402
from reranker_server.loading.calibration import CALIBRATION_DOCUMENTS, CALIBRATION_QUERIES  # noqa: E402
from reranker_server.loading.loaded_model import LoadedModel  # noqa: E402
from reranker_server.loading.loader import load_model  # noqa: E402
from reranker_server.model import scoring  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402  (the test suite's real server on loopback)


def scores(model: LoadedModel) -> np.ndarray:
    return np.concatenate([model.score_sync(q, CALIBRATION_DOCUMENTS) for q in CALIBRATION_QUERIES])


def agreement(reference: LoadedModel, other: LoadedModel) -> str:
    a, b = scores(reference), scores(other)
    rho = np.mean([
        scoring.spearman(reference.score_sync(q, CALIBRATION_DOCUMENTS), other.score_sync(q, CALIBRATION_DOCUMENTS))
        for q in CALIBRATION_QUERIES
    ])  # fmt: skip
    return f"max |diff| {np.abs(a - b).max():.2e}, Spearman {rho:.4f}"


def forward_rate(model: LoadedModel, batch: int, tokens: int, seconds: float = 3.0) -> float:
    """Pairs/s of the bare forward pass on padded batches (what the server can at most deliver)."""
    import torch

    [(query, documents)] = bench.make_workload(1, batch, tokens, seed=0)
    padded = pad(model.encoder.encode_pairs(query, documents), model.encoder.pad_id)
    for _ in range(3):
        model.backend.forward(padded)
    torch.cuda.synchronize()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.backend.forward(padded)  # returns numpy: synchronizes
        done += batch
    return done / (time.perf_counter() - started)


def varied_shapes_rate(model: LoadedModel, rounds: int = 2) -> list[float]:
    """Pairs/s over batches of varied size and length (as a server sees them), per round: a
    first round far slower than the second means per-shape warm-up costs."""
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(60):
        size, tokens = int(rng.integers(1, 65)), int(rng.integers(16, 257))
        [(query, documents)] = bench.make_workload(1, size, tokens, seed=int(rng.integers(1 << 30)))
        batches.append(pad(model.encoder.encode_pairs(query, documents), model.encoder.pad_id))
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            model.backend.forward(batch)
        rates.append(sum(b.input_ids.shape[0] for b in batches) / (time.perf_counter() - started))
    return rates


def serve_and_measure(model_dir: str, dtype: str, args: argparse.Namespace) -> None:
    import httpx

    env = {"MODEL_NAME": model_dir, "DEVICE_PREFERENCE": "cuda", "DTYPE": dtype, "CACHE_SIZE": "0",
           "ACCESS_LOG": "false", "BATCH_SIZE": "64", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    server = ServerProcess(env, Path("/tmp/cuda-check-server.log"))
    try:
        server.wait_ready(timeout=180)
        model = httpx.get(f"{server.url}/health").json()["model"]
        print(f"server DTYPE={dtype}: backend {model['backend']}, device {model['device']}, dtype {model['dtype']}")
        for level in [args.concurrency[0], *args.concurrency]:  # the first level twice: cold, then warm
            workload = bench.make_workload(args.requests, args.documents, args.doc_tokens, seed=level)
            result = asyncio.run(bench.run(server.url, "cohere", workload, level, 120.0, False)).summary()
            rate, p50, p99 = result["pairs_per_second"], result["latency_p50_ms"], result["latency_p99_ms"]
            print(f"  over HTTP c={level}: {rate:.0f} pairs/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                  f"errors {result['errors'] or '-'}")  # fmt: skip
    finally:
        server.stop()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a cross-encoder directory")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--doc-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[4, 16])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")

    cpu = load_model(Settings(model_name=args.model, device_preference="cpu", dtype="float32"))
    on_gpu = {}
    for dtype in ("float32", "auto", "bfloat16"):
        model = load_model(Settings(model_name=args.model, device_preference="cuda", dtype=dtype))
        on_gpu[dtype] = model
        print(f"cuda DTYPE={dtype}: device {model.backend.device}, dtype {model.backend.dtype} "
              f"({model.dtype_note}); vs CPU float32: {agreement(cpu, model)}")  # fmt: skip
    for dtype, model in on_gpu.items():
        rate = forward_rate(model, batch=64, tokens=args.doc_tokens)
        print(f"in-process forward, cuda DTYPE={dtype} ({model.backend.dtype}), batch 64, documents of about "
              f"{args.doc_tokens} tokens: {rate:.0f} pairs/s")  # fmt: skip
        rounds = ", ".join(f"{r:.0f}" for r in varied_shapes_rate(model))
        print(f"  varied batch sizes (1-64) and lengths (16-256), two rounds: {rounds} pairs/s")
    del on_gpu
    torch.cuda.empty_cache()
    for dtype in ("float32", "auto"):
        serve_and_measure(args.model, dtype, args)


if __name__ == "__main__":
    main()
