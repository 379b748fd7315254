"""Start-up time and resident memory of reranker-server on each CPU engine.

For the MiniLM-L6 cross-encoder of run_benchmark.py, interleaved over --rounds:
- seconds from process start to /ready with DTYPE=auto: ONNX Runtime with an empty graph cache
  (exports, and on CPUs without native bf16 quantizes an int8 candidate), ONNX Runtime with the
  cache it just filled (a restart), and ENGINE=pytorch;
- the server's RSS at ready, right after a concurrency-16 burst of 141-token pairs (its queue has
  drained by then, so ONNX Runtime has already given its arena back) and two seconds later (the
  batcher trims the heap once its queue has been empty for a second), with the burst's rate.

    python benchmarks/startup_memory.py [--rounds 2]

Prints the CPU model and flags first; figures only, no verdicts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import Server, machine, make_workload, minilm_cross_dir, run


def one_start(model_dir: Path, engine: str, cache: Path) -> dict[str, float]:
    Server.extra_env = {"ONNX_CACHE_DIR": str(cache)}  # Server sets MALLOC_ARENA_MAX=2 as the image does
    started = time.monotonic()
    server = Server(model_dir, "auto", engine=engine)
    figures = {"ready_s": time.monotonic() - started, "rss_ready": server.rss_mib()}
    result = asyncio.run(run(server.url, "cohere", make_workload(48, 32, 120, seed=3), 16))
    figures["rss_after_burst"] = server.rss_mib()
    time.sleep(2)
    figures["rss_2s_later"] = server.rss_mib()
    figures["pairs_per_second"] = result.summary()["pairs_per_second"]
    server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for key, value in machine().items():
        print(f"{key}: {value}")
    model_dir = minilm_cross_dir()
    rows: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="reranker-onnx-bench-") as tmp:
            cache = Path(tmp)
            rows.setdefault("onnxruntime, empty graph cache", []).append(one_start(model_dir, "auto", cache))
            rows.setdefault("onnxruntime, graph cached (a restart)", []).append(one_start(model_dir, "auto", cache))
            rows.setdefault("ENGINE=pytorch", []).append(one_start(model_dir, "pytorch", cache))
    print("\n| server, DTYPE=auto | to ready (s) | RSS at ready | after c=16 burst | 2 s later | burst pairs/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, runs in rows.items():
        cells = [" / ".join(f"{r[k]:.1f}" if k in ("ready_s", "pairs_per_second") else f"{r[k]:.0f}" for r in runs)
                 for k in ("ready_s", "rss_ready", "rss_after_burst", "rss_2s_later", "pairs_per_second")]  # fmt: skip
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("(RSS in MiB; one figure per round)")


if __name__ == "__main__":
    main()
