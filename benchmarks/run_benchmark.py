"""Side-by-side benchmark, one run on one machine, same model and workload:

(a) the baseline a user would otherwise write: sentence_transformers.CrossEncoder.predict,
    in-process, float32;
(b) our server over HTTP at concurrency 1, 4 and 16, float32;
(c) our server with DTYPE=auto (reduced precision where the CPU has it natively);
(d) the machine's matrix-multiply rate, and each run's achieved FLOP/s as a fraction of it;
plus a soak at concurrency 16 (float32, then int8) that samples the server's resident memory.

    python benchmarks/run_benchmark.py [--write benchmarks/results/<date>-<what>.md]
    python benchmarks/run_benchmark.py --llm   # (e) only: an LLM reranker against the model card's loop

(f) our server with DTYPE=int8 on both engines, and (g) Infinity (`infinity-emb`, torch engine)
    serving the same model over HTTP in each dtype it offers, when its own virtualenv exists
    (INFINITY_BIN, default .cache/peers/infinity/bin/infinity_emb; `make peers` creates it):
    skipped with the reason when absent.
(a2) our ONNX Runtime export in-process (the server's default CPU engine, no HTTP around it),
    timed in every round just before (b), which is also reported against it; and our server on
    ENGINE=pytorch next to the default engine.
Use --doc-tokens 32 for short pairs, where overheads weigh most.

(e) an LLM reranker (the tiny Qwen3 test checkpoint, so the figures show overheads, not a real
model's compute): our server over HTTP at concurrency 4 against the Qwen3-Reranker model card's
in-process transformers loop (left-padded batches, full-vocabulary logits at the last position).

The model is the MiniLM cross-encoder test checkpoint (the shape of ms-marco-MiniLM-L-6-v2),
built offline by tests/model_fixtures.py. The server runs with CACHE_SIZE=0 so every run scores
every pair.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reranker_client.bench import make_workload, run  # noqa: E402

from reranker_server.backends.onnx.fusion import root_logger_quiet  # noqa: E402
from reranker_server.model.hardware import cpu_flags, cpu_has_native_bf16, cpu_quota, int8_needs_reduced_range  # noqa: E402
from reranker_server.model.scoring import spearman  # noqa: E402
from tests.model_fixtures import minilm_cross_dir, qwen3_reranker_dir  # noqa: E402
from tests.processes import free_port, rss_mib  # noqa: E402

# The CPU features that decide the GEMM kernels: float32 width, int8 dot products, native bf16.
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def machine() -> dict[str, str]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": cpu,
        "cores": str(cpu_quota()),
        "flags": " ".join(flag for flag in MATMUL_FLAGS if flag in flags) or "none",
        "lacks": " ".join(flag for flag in MATMUL_FLAGS if flag not in flags) or "none",
        "native bf16": str(cpu_has_native_bf16()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
    }


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Sustained float32 GEMM rate: the ceiling a transformer forward pass can approach."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def onnx_gemm_gflops(hidden: int, inner: int, tokens: int = 2048, repeats: int = 20) -> dict[str, float]:
    """ONNX Runtime's rate on one feed-forward GEMM of the model's shape ([tokens, hidden] x
    [hidden, inner]), float32 and int8 quantized as the server quantizes (dynamic, per-channel
    weights, 7-bit where the CPU lacks VNNI): the most a forward pass on this engine can approach.
    The GEMMs are nearly all of a pair's FLOPs and this, the largest, runs fastest of them, so a
    ``pairs/s x flops_per_pair`` above the int8 figure is out of this CPU's reach."""
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((hidden, inner), np.float32) / 20, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, inner])],
        [weight],
    )
    x = np.random.default_rng(1).standard_normal((tokens, hidden), np.float32)
    rates = {}
    with tempfile.TemporaryDirectory() as scratch:
        fp32, int8 = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
        with root_logger_quiet():
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=int8_needs_reduced_range())  # fmt: skip
        for name, path in (("float32", fp32), ("int8", int8)):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for _ in range(3):
                session.run(None, {"x": x})
            started = time.perf_counter()
            for _ in range(repeats):
                session.run(None, {"x": x})
            rates[name] = 2 * tokens * hidden * inner * repeats / (time.perf_counter() - started) / 1e9
    return rates


def flops_per_pair(config: dict[str, Any], tokens: float) -> float:
    """Forward FLOPs of one (query, document) pair of ``tokens`` tokens (matmuls; the rest is noise)."""
    layers, hidden, inner = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    per_layer = 2 * (4 * tokens * hidden**2 + 2 * tokens * hidden * inner + 2 * tokens**2 * hidden)
    return float(layers * per_layer + 2 * hidden**2)  # + pooler/head


class Baseline:
    """CrossEncoder.predict in this process, loaded once, timed per round."""

    def __init__(self, model_dir: Path, workload: list[tuple[str, list[str]]]) -> None:
        from sentence_transformers import CrossEncoder

        self.encoder = CrossEncoder(str(model_dir), device="cpu")
        self.pairs = [(q, d) for q, docs in workload for d in docs]
        self.encoder.predict(self.pairs[:64], batch_size=32)  # warm-up

    def rate(self) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        scores = self.encoder.predict(self.pairs, batch_size=32, show_progress_bar=False)
        return len(self.pairs) / (time.perf_counter() - started), np.asarray(scores)


class OnnxInProcess:
    """(a2) our ONNX Runtime export of the same checkpoint, in this process, float32: tokenized
    and length-sorted like CrossEncoder.predict, batches of 32. What the server's engine can do
    with no HTTP, JSON or batching around it."""

    def __init__(self, model_dir: Path, workload: list[tuple[str, list[str]]]) -> None:
        from reranker_server.backends import pad
        from reranker_server.core.settings import Settings
        from reranker_server.loading.loader import load_model
        from reranker_server.model.tasks import ScoreOptions

        self.model = load_model(Settings(model_name=str(model_dir), dtype="float32", engine="onnxruntime"))
        self.pad, self.options, self.workload = pad, ScoreOptions(), workload

    def rate(self) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        sequences = [s for q, docs in self.workload for s in self.model.task.encode(q, docs, self.options).sequences]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        rows = np.zeros(len(sequences), dtype=np.float32)
        for i in range(0, len(order), 32):
            chunk = order[i : i + 32]
            out = self.model.backend.forward(self.pad([sequences[j] for j in chunk], self.model.encoder.pad_id))
            rows[chunk] = out[:, 0]
        return len(sequences) / (time.perf_counter() - started), rows


class LlmBaseline:
    """The Qwen3-Reranker model card's scoring loop, in this process, float32, batches of 32."""

    def __init__(self, model_dir: Path, workload: list[tuple[str, list[str]]]) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from reranker_server.model.templates import QWEN3

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.prefix = self.tokenizer.encode(QWEN3.prefix, add_special_tokens=False)
        self.suffix = self.tokenizer.encode(QWEN3.suffix, add_special_tokens=False)
        self.yes, self.no = self.tokenizer.convert_tokens_to_ids("yes"), self.tokenizer.convert_tokens_to_ids("no")
        self.max_length = self.tokenizer.model_max_length
        self.pairs = [
            f"<Instruct>: {QWEN3.default_instruction}\n<Query>: {q}\n<Document>: {d}"
            for q, docs in workload
            for d in docs
        ]
        self.score(self.pairs[:32])  # warm-up

    def score(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        inputs = self.tokenizer(texts, padding=False, truncation="longest_first", return_attention_mask=False,
                                max_length=self.max_length - len(self.prefix) - len(self.suffix))  # fmt: skip
        inputs["input_ids"] = [self.prefix + ids + self.suffix for ids in inputs["input_ids"]]
        batch = self.tokenizer.pad(inputs, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**batch).logits[:, -1, :]
            pair = torch.stack([logits[:, self.no], logits[:, self.yes]], dim=1)
            return torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().numpy()

    def rate(self) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        scores = np.concatenate([self.score(self.pairs[i : i + 32]) for i in range(0, len(self.pairs), 32)])
        return len(self.pairs) / (time.perf_counter() - started), scores


def llm_rows(args: argparse.Namespace, info: dict[str, str]) -> None:
    """(e): the LLM reranker row, side by side with its in-process baseline, interleaved rounds."""
    model_dir = qwen3_reranker_dir()
    workload = make_workload(args.requests, args.documents, 60, seed=1)
    base = LlmBaseline(model_dir, workload)
    server = Server(model_dir, "float32")
    samples: list[tuple[float, float]] = []
    base_scores = np.zeros(0)
    for _ in range(args.rounds):
        base_rate, base_scores = base.rate()
        result = asyncio.run(run(server.url, "cohere", workload, 4))
        assert result.ok == len(workload), result.summary()
        samples.append((result.summary()["pairs_per_second"], base_rate))
    ours = server.scores(workload)
    server.stop()
    ratios = [r / b for r, b in samples]
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"(e) LLM reranker, tiny Qwen3 test checkpoint, {len(base.pairs)} pairs, {args.rounds} rounds:")
    print(f"| model card loop, in-process, float32 | {np.median([b for _, b in samples]):.1f} pairs/s | 1.00x |")
    print(f"| reranker-server over HTTP, float32, c=4 | {np.median([r for r, _ in samples]):.1f} pairs/s | "
          f"{np.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] |")  # fmt: skip
    print(f"scores: server vs model card loop, max abs difference {np.max(np.abs(ours - base_scores)):.2e}")


def wait_ready(proc: subprocess.Popen[bytes], url: str, name: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become ready in {limit:.0f} s")


INFINITY_BIN = Path(os.environ.get("INFINITY_BIN", REPO / ".cache/peers/infinity/bin/infinity_emb"))


class Infinity:
    """A peer: ``infinity_emb v2`` serving the same checkpoint, in its own venv (torch engine)."""

    def __init__(self, model_dir: Path, dtype: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(INFINITY_BIN), "v2", "--model-id", str(model_dir), "--engine", "torch", "--device", "cpu",
                "--dtype", dtype, "--batch-size", "32", "--port", str(self.port), "--host", "127.0.0.1",
                "--no-model-warmup"]  # fmt: skip
        env = os.environ | {"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(self.proc, f"{self.url}/health", "infinity_emb", 240)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Server:
    extra_env: dict[str, str] = {}  # --server-env

    def __init__(self, model_dir: Path, dtype: str, engine: str = "auto") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = (
            os.environ
            | {
                "MODEL_NAME": str(model_dir),
                "DTYPE": dtype,
                "ENGINE": engine,
                "CACHE_SIZE": "0",
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "LOG_LEVEL": "warning",
                "HF_HUB_OFFLINE": "1",
                "MALLOC_ARENA_MAX": "2",  # as the image sets it
            }
            | self.extra_env
        )
        self.proc = subprocess.Popen([sys.executable, "-m", "reranker_server"], env=env)
        wait_ready(self.proc, f"{self.url}/ready", "reranker-server", 180)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = httpx.get(f"{self.url}/info").json()
        return info

    def rss_mib(self) -> float:
        return rss_mib(self.proc.pid)

    def scores(self, workload: list[tuple[str, list[str]]]) -> np.ndarray:
        out = []
        with httpx.Client(base_url=self.url, timeout=120) as client:
            for query, docs in workload:
                results = client.post("/rerank", json={"query": query, "texts": docs, "raw_scores": False}).json()
                by_index = {r["index"]: r["score"] for r in results}
                out.extend(by_index[i] for i in range(len(docs)))
        return np.asarray(out)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def soak(
    server: Server, seconds: float, documents: int, doc_tokens: int, warm_up: float = 30.0, every: float = 5.0
) -> list[tuple[float, float]]:
    """Concurrency 16 without a break for a ``warm_up`` (allocator pools fill up for the new
    shapes) and then ``seconds``, new texts throughout; (elapsed, RSS MiB) every ``every`` seconds
    of the measured part, read on a timer. (It used to send waves of 32 requests and read RSS as each wave
    ended: at the one moment the queue drains and the engine gives its arena back, so the samples
    swung with the timing of that drain, not with what the server holds under load.)"""
    samples: list[tuple[float, float]] = []

    def endless() -> Iterator[tuple[str, list[str]]]:
        for batch in itertools.count():
            yield from make_workload(16, documents, doc_tokens, seed=10_000 + batch)

    async def sample(measured_from: float, until: float) -> None:
        await asyncio.sleep(measured_from - time.monotonic())
        while time.monotonic() <= until:
            samples.append((time.monotonic() - measured_from, server.rss_mib()))
            await asyncio.sleep(every)

    async def load() -> None:
        measured_from = time.monotonic() + warm_up
        until = measured_from + seconds
        sampler = asyncio.create_task(sample(measured_from, until))
        result = await run(server.url, "cohere", endless(), 16, stop_at=until)
        await sampler
        assert result.ok == result.requests, result.summary()

    asyncio.run(load())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--doc-tokens", type=int, default=120)
    parser.add_argument("--soak-seconds", type=float, default=120)
    parser.add_argument("--rounds", type=int, default=3, help="baseline/server rounds (medians are reported)")
    parser.add_argument("--write", type=Path, help="also write the results as markdown here")
    parser.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for the server processes")
    parser.add_argument("--llm", action="store_true", help="run only (e), the LLM reranker rows")
    args = parser.parse_args()
    Server.extra_env = dict(item.split("=", 1) for item in args.server_env)
    if args.llm:
        llm_rows(args, machine())
        return

    model_dir = minilm_cross_dir()
    import json

    config = json.loads((model_dir / "config.json").read_text())
    workload = make_workload(args.requests, args.documents, args.doc_tokens, seed=1)
    n_pairs = sum(len(d) for _, d in workload)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokens = float(np.mean([len(tokenizer(q, d, truncation=True)["input_ids"]) for q, docs in workload for d in docs]))
    pair_flops = flops_per_pair(config, tokens)
    info = machine()

    # This class of machine is shared and noisy: every round runs the baseline next to the server
    # runs it is compared with, and the table reports medians over the rounds.
    base = Baseline(model_dir, workload)
    # label -> [(pairs/s, same-round baseline pairs/s)]; the baseline's row first
    runs: dict[str, list[tuple[float, float]]] = {"(a) CrossEncoder.predict, in-process, float32": []}
    notes: dict[str, str] = {}
    gemm: list[float] = []
    onnx_gemm: list[dict[str, float]] = []
    base_scores = np.zeros(0)

    def measure(label: str, url: str, concurrency: int, api: str = "cohere") -> float:
        nonlocal base_scores
        base_rate, base_scores = base.rate()
        result = asyncio.run(run(url, api, workload, concurrency))
        assert result.ok == len(workload), result.summary()
        summary = result.summary()
        runs.setdefault(label, []).append((summary["pairs_per_second"], base_rate))
        runs.setdefault("(a) CrossEncoder.predict, in-process, float32", []).append((base_rate, base_rate))
        notes[label] = f"p50 {summary['latency_p50_ms']:.0f} / p99 {summary['latency_p99_ms']:.0f} ms"
        return float(summary["pairs_per_second"])

    server = Server(model_dir, "float32")
    engine = server.info()["backend"]
    onnx_in_process = OnnxInProcess(model_dir, workload)
    onnx_label = "(a2) our ONNX Runtime export, in-process, float32"
    notes[onnx_label] = "length-sorted batches of 32, tokenization included"
    # (b) against (a2) in the same round: the server delivering its own engine's forward rate
    vs_in_process: dict[int, list[float]] = {}
    for _ in range(args.rounds):
        gemm.append(matmul_gflops())
        onnx_gemm.append(onnx_gemm_gflops(config["hidden_size"], config["intermediate_size"]))
        base_rate, _ = base.rate()
        in_process = onnx_in_process.rate()[0]
        runs.setdefault(onnx_label, []).append((in_process, base_rate))
        for concurrency in (1, 4, 16):
            rate = measure(f"(b) reranker-server over HTTP, float32 ({engine}), c={concurrency}", server.url,
                           concurrency)  # fmt: skip
            vs_in_process.setdefault(concurrency, []).append(rate / in_process)
    del onnx_in_process
    fp32_scores = server.scores(workload)

    def soaked(server: Server) -> list[tuple[float, float]]:
        return soak(server, args.soak_seconds, args.documents, args.doc_tokens) if args.soak_seconds else []

    soaks = {"float32": soaked(server)}
    server.stop()
    torch_server = Server(model_dir, "float32", engine="pytorch")
    for _ in range(args.rounds):
        measure("(b) reranker-server over HTTP, float32, ENGINE=pytorch, c=4", torch_server.url, 4)
    torch_server.stop()

    auto = Server(model_dir, "auto")
    auto_info = auto.info()
    auto_label = f"(c) reranker-server over HTTP, DTYPE=auto -> {auto_info['dtype']} ({auto_info['backend']}), c=4"
    for _ in range(args.rounds):
        measure(auto_label, auto.url, 4)
    notes[auto_label] = notes.get(auto_label, "") + f"; {auto_info['dtype_reason']}"
    auto_scores = auto.scores(workload)
    auto.stop()
    int8 = Server(model_dir, "int8")
    int8_engine = int8.info()["backend"]
    for _ in range(args.rounds):
        measure(f"(f) reranker-server over HTTP, DTYPE=int8 ({int8_engine}), c=4", int8.url, 4)
    int8_scores = int8.scores(workload)
    soaks["int8"] = soaked(int8)
    int8.stop()
    torch_int8 = Server(model_dir, "int8", engine="pytorch")
    for _ in range(args.rounds):
        measure("(f) reranker-server over HTTP, DTYPE=int8, ENGINE=pytorch, c=4", torch_int8.url, 4)
    torch_int8.stop()
    # Infinity's optimum (ONNX) engine is not among them: it can't be installed here
    # (benchmarks/results/2026-11-26-5-int8-and-infinity.md says why)
    peer_dtypes = ["float32", "int8"] + (["bfloat16"] if cpu_has_native_bf16() else [])
    if INFINITY_BIN.exists():
        for dtype in peer_dtypes:
            label = f"(g) Infinity 0.0.78 (torch engine) over HTTP, {dtype}, c=4"
            try:
                peer = Infinity(model_dir, dtype)
            except RuntimeError as exc:
                notes[label] = f"not run: {exc}"
                runs[label] = []
                continue
            for _ in range(args.rounds):
                measure(label, peer.url, 4, api="infinity")
            peer.stop()
    else:
        print(f"(g) Infinity skipped: {INFINITY_BIN} does not exist (make peers)")
    notes["(a) CrossEncoder.predict, in-process, float32"] = "batch_size=32"
    per_query = [
        spearman(fp32_scores[i : i + args.documents], auto_scores[i : i + args.documents])
        for i in range(0, n_pairs, args.documents)
    ]
    int8_agreement = [
        spearman(fp32_scores[i : i + args.documents], int8_scores[i : i + args.documents])
        for i in range(0, n_pairs, args.documents)
    ]
    parity = float(np.max(np.abs(fp32_scores - base_scores))) if base_scores.size else float("nan")
    peak = float(np.median(gemm)) if gemm else matmul_gflops()
    ort_peak = {dtype: float(np.median([r[dtype] for r in onnx_gemm])) for dtype in ("float32", "int8")}
    peers = [float(np.median([r for r, _ in samples])) for label, samples in runs.items() if "(g)" in label and samples]
    twice_best_peer = (
        f"; 2x the best peer here ({max(peers):.1f} pairs/s) needs {2 * max(peers) * pair_flops / 1e9:.1f} GFLOP/s"
        if peers
        else ""
    )

    lines = ["# Benchmark results", ""]
    if Server.extra_env:
        lines += [f"Server environment: {Server.extra_env}", ""]
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    lines += [
        f"Workload: {args.requests} requests x {args.documents} documents, {tokens:.0f} tokens per pair on average "
        f"({n_pairs} pairs); model: MiniLM-L6 cross-encoder ({config['num_hidden_layers']} layers, hidden "
        f"{config['hidden_size']}), {pair_flops / 1e9:.2f} GFLOP per pair.",
        f"(d) float32 GEMM rate of this machine (1024x1024 torch.mm), median of {len(gemm)} rounds: "
        f"{peak:.1f} GFLOP/s (rounds: {', '.join(f'{g:.0f}' for g in gemm)}).",
        f"(d2) ONNX Runtime on this model's feed-forward GEMM ([2048, {config['hidden_size']}] x "
        f"[{config['hidden_size']}, {config['intermediate_size']}]), median of {len(onnx_gemm)} rounds: float32 "
        f"{ort_peak['float32']:.1f}, int8 {ort_peak['int8']:.1f} GFLOP/s{twice_best_peer}.",
        f"Rounds: {args.rounds}; each server run is timed right after a baseline run, and 'vs (a)' is the",
        "median of those same-round ratios (their range in brackets).",
        "(b) float32 over HTTP against (a2) of the same round (our engine in-process, timed just before): "
        + ", ".join(f"c={c} {np.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]" for c, r in vs_in_process.items())
        + ".",
        "",
        "| run | pairs/s (median) | vs (a) | GFLOP/s | of GEMM peak | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, samples in runs.items():
        if not samples:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | {notes.get(label, '')} |")
            continue
        rate = float(np.median([r for r, _ in samples]))
        ratios = [r / b for r, b in samples]
        achieved = rate * pair_flops / 1e9
        spread = f"{np.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        lines.append(f"| {label} | {rate:.1f} | {spread} | {achieved:.1f} | {achieved / peak:.0%} | {notes[label]} |")
    lines += [
        "",
        f"Scores: server float32 vs CrossEncoder.predict, max abs difference {parity:.2e}.",
        f"DTYPE=auto vs float32 ranking agreement (Spearman per query): mean {np.mean(per_query):.4f}, "
        f"min {np.min(per_query):.4f}.",
        f"DTYPE=int8 vs float32 ranking agreement (Spearman per query): mean {np.mean(int8_agreement):.4f}, "
        f"min {np.min(int8_agreement):.4f}.",
    ]
    for dtype, samples in soaks.items():
        if samples:
            rss = [mib for _, mib in samples]
            spread = 100 * (max(rss) - min(rss)) / rss[0]
            lines += [
                "",
                f"Soak, DTYPE={dtype}: concurrency 16 for {samples[-1][0]:.0f} s after a 30 s warm-up, new texts "
                f"throughout; server RSS start {rss[0]:.0f} MiB, end {rss[-1]:.0f} MiB, max {max(rss):.0f} MiB, "
                f"spread {spread:.1f}% (samples: {', '.join(f'{mib:.0f}' for mib in rss)}).",
            ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
