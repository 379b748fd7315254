"""The serving pipeline's ceiling: what the server carries when the model costs next to nothing.

The model is a one-layer BERT of hidden size 32 with the MiniLM tokenizer (tests/model_fixtures.py,
``near-free-cross``), so every cost measured is the pipeline's: HTTP, JSON, validation,
tokenization, batching, padding, the event loop. Side by side, on the same cores (``taskset``):
- the tokenizer alone: ``encode_batch`` on the same pairs (TOKENIZERS_PARALLELISM unset: all the
  cores it is given) - the rate the pipeline should approach;
- the server over HTTP at each concurrency, driven by a load generator that costs little CPU
  (pre-built request bytes on keep-alive sockets); it shares the cores, so its own CPU seconds
  are reported, and the server's pairs per server-CPU-second beside the pairs per second;
- with ``--processes 1,2``, the same cores shared by that many server processes (one port each,
  the clients spread over them, as a Service spreads them over pods on one node): whether the
  pipeline's Python (HTTP, JSON, the event loop) holds a process back where two would not;
- with ``--api-processes 1,2``, one server whose HTTP, JSON and tokenization run in that many
  API processes feeding one engine process (``API_PROCESSES``): one model, one batcher;
- with ``--baseline DIR``, first the same rows for the server of another checkout (``git worktree
  add DIR <commit>``), one process: a change against what was there before, in the same run;
- with ``--profile`` (needs py-spy), where the server's time goes: its busiest functions by samples.

    python benchmarks/pipeline_ceiling.py [--cores 1,2] [--concurrency 4,16,32] [--seconds 15]
                                          [--documents 32] [--doc-tokens 130] [--profile]
                                          [--server-env NAME=VALUE ...] [--processes 1,2]
                                          [--api-processes 1,2] [--baseline DIR] [--rounds N]
                                          [--write FILE]

Each figure is one run on one machine: compare ratios within a run, never across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reranker_client.bench import make_workload  # noqa: E402

from tests.processes import children, free_port, spawned_processes, stat_fields  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the load generator (runs in a process of its own) -------------------------------------------


def request_bytes(port: int, bodies: list[bytes]) -> list[bytes]:
    head = (
        "POST /rerank HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Content-Length: {n}\r\n\r\n"
    )
    return [head.format(port=port, n=len(body)).encode() + body for body in bodies]


async def _client(port: int, requests: list[bytes], start: int, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the Host header names ports[0]: not read
    failures, index = 0, start
    try:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            writer.write(requests[index % len(requests)])
            index += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))  # fmt: skip
            await reader.readexactly(length)
            if head.split(b" ", 2)[1] == b"200":
                latencies.append(time.monotonic() - sent)
            else:
                failures += 1
    finally:
        writer.close()
    return failures


def generate_load(ports: list[int], bodies_file: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` keep-alive clients for ``seconds``, spread over ``ports``; latencies and this
    process's CPU seconds."""
    requests = request_bytes(ports[0], [line.encode() for line in bodies_file.read_text().splitlines()])
    latencies: list[float] = []
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF)

    async def main() -> list[int]:
        deadline = time.monotonic() + seconds
        step = max(1, len(requests) // concurrency)
        return await asyncio.gather(*(_client(ports[i % len(ports)], requests, i * step, deadline, latencies)
                                      for i in range(concurrency)))  # fmt: skip

    failures = sum(asyncio.run(main()))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"elapsed": time.monotonic() - started, "latencies": latencies, "failures": failures, "cpu": cpu}


# --- the tokenizer alone ----------------------------------------------------------------------------


def tokenizer_rate(model_dir: Path, workload: list[tuple[str, list[str]]], seconds: float) -> float:
    """Pairs per second of ``encode_batch`` on the workload's pairs, one request's pairs per call."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(512)
    pairs, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        for query, docs in workload:
            tokenizer.encode_batch([(query, doc) for doc in docs])
            pairs += len(docs)
    return pairs / (time.monotonic() - started)


# --- the server -------------------------------------------------------------------------------------


def main_thread_cpu_seconds(pid: int) -> float:
    """The event loop's thread: the part of a server that one core bounds however many it has."""
    fields = stat_fields(f"/proc/{pid}/task/{pid}")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """The process's CPU seconds and its live descendants' (API processes and their engine)."""
    try:
        fields = stat_fields(f"/proc/{pid}")
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return own + sum(cpu_seconds(child) for child in children(pid))


class PinnedServer:
    def __init__(self, model_dir: Path, cores: str, extra_env: dict[str, str], code: Path | None = None) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # as the image runs it
        if code is not None:  # another checkout's server (and contract) ahead of this one's
            env["PYTHONPATH"] = os.pathsep.join(str(code / part) for part in ("server", "contract"))
        env |= {"MODEL_NAME": str(model_dir), "DTYPE": "float32", "CACHE_SIZE": "0", "HOST": "127.0.0.1",
                "PORT": str(self.port), "LOG_LEVEL": "warning", "ACCESS_LOG": "false", "HF_HUB_OFFLINE": "1",
                "MALLOC_ARENA_MAX": "2"} | extra_env  # fmt: skip
        self.proc = subprocess.Popen(["taskset", "-c", cores, sys.executable, "-m", "reranker_server"], env=env)
        from benchmarks.run_benchmark import wait_ready

        wait_ready(self.proc, f"http://127.0.0.1:{self.port}/ready", "reranker-server", 180)

    def counters(self) -> dict[str, float]:
        """The server's own forward-pass counters (wall seconds of its inference thread, batches)."""
        import httpx

        wanted = ("reranker_forward_seconds_sum", "reranker_batch_size_sum", "reranker_batch_size_count")
        lines = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text.splitlines()
        return {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith(wanted)}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def profile(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """py-spy's raw stacks over ``seconds``: (function, share of samples) of the 12 busiest leaves."""
    subprocess.run(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                    "--format", "raw", "--output", str(out), "--nonblocking", "--threads"],
                   check=True, capture_output=True)  # fmt: skip
    leaves: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        leaves[f"{frames[-1]}  [{thread}]"] += int(count)
    total = sum(leaves.values()) or 1
    return [(name, count / total) for name, count in leaves.most_common(12)]


@dataclass
class Row:
    code: str  # "this" checkout, or "baseline"
    cores: str
    processes: int
    api_processes: int
    concurrency: int
    pairs_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_pair: float
    loop_cpu_ms_per_pair: float  # the main thread's: one process's, or with API processes the engine's
    server_pairs_per_cpu_s: float
    forward_ms_per_pair: float  # the model alone, as the server times its forward passes
    mean_batch: float
    load_cpu_share: float  # the load generator's CPU seconds over the elapsed seconds
    tokenizer_pairs_per_s: float

    def line(self) -> str:
        ratio = self.pairs_per_s / self.tokenizer_pairs_per_s
        cells = [
            self.code, self.cores, str(self.processes), str(self.api_processes), str(self.concurrency),
            f"{self.pairs_per_s:,.0f}", f"{self.p50_ms:.0f}", f"{self.p99_ms:.0f}",
            f"{self.server_cpu_ms_per_pair:.3f}",
            f"{self.loop_cpu_ms_per_pair:.3f}",
            f"{self.server_pairs_per_cpu_s:,.0f}",
            f"{self.forward_ms_per_pair:.3f}", f"{self.mean_batch:.1f}", f"{self.load_cpu_share:.2f}",
            f"{self.tokenizer_pairs_per_s:,.0f}", f"{ratio:.2f}x",
        ]  # fmt: skip
        return "| " + " | ".join(cells) + " |"


HEADER = ("| code | cores | servers | API processes | c | pairs/s | p50 ms | p99 ms | server CPU ms/pair "
          "| event loop CPU ms/pair | pairs per server CPU-s | forward ms/pair | mean batch | load gen CPU "
          "| tokenizer pairs/s | server / tokenizer |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip


def medians(rows: list[Row]) -> list[Row]:
    """One row per layout and concurrency: each figure's median over the rounds."""
    groups: dict[tuple[str, str, int, int, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.code, row.cores, row.processes, row.api_processes, row.concurrency), []).append(row)
    numbers = [f.name for f in fields(Row) if f.type == "float"]
    return [replace(same[0], **{n: statistics.median(getattr(r, n) for r in same) for n in numbers})
            for same in groups.values()]  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def _cores(cpu_set: str) -> int:
    return sum(int(b) - int(a) + 1 if "-" in part else 1
               for part in cpu_set.split(",") for a, _, b in [part.partition("-")])  # fmt: skip


def measure(args: argparse.Namespace, model_dir: Path, folder: Path) -> tuple[list[Row], list[str]]:
    workload = make_workload(200, args.documents, args.doc_tokens, seed=7)
    bodies = folder / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"query": q, "texts": d, "truncate": True}) for q, d in workload))
    rows, notes = [], []
    for cores in args.cores:
        rate = json.loads(_self(["--tokenizer", str(model_dir)], cores, workload_file=bodies))["rate"]
        # (servers, API processes each): servers side by side, or one server's API processes apart from its engine
        layouts: list[tuple[Path | None, int, int]] = [(args.baseline, 1, 1)] if args.baseline else []
        layouts += [(None, p, 1) for p in args.processes] + [(None, 1, a) for a in args.api_processes if a > 1]
        # rounds alternate the order, so a VM's drift over the run lands on every layout alike
        ordered = [layout for r in range(args.rounds) for layout in (layouts if r % 2 == 0 else layouts[::-1])]
        for code, processes, api_processes in ordered:
            # several processes share the cores: each gets its part of them for its inference threads
            threads = {"TORCH_THREADS": str(max(1, _cores(cores) // processes))} if processes > 1 else {}
            env = dict(args.server_env) | threads | {"API_PROCESSES": str(api_processes)}
            servers = [PinnedServer(model_dir, cores, env, code) for _ in range(processes)]
            ports = ",".join(str(s.port) for s in servers)
            try:
                _self(["--load", ports, "8", "3"], cores, workload_file=bodies)  # warm-up
                for concurrency in args.concurrency:
                    # the one process's event loop, or the engine's: the serial part of the pipeline
                    looping = spawned_processes(servers[0].proc.pid)[0] if api_processes > 1 else servers[0].proc.pid
                    loop_before = main_thread_cpu_seconds(looping)
                    cpu_before, before = _total(servers)
                    load = json.loads(_self(["--load", ports, str(concurrency), str(args.seconds)], cores,
                                            workload_file=bodies))  # fmt: skip
                    cpu_after, after = _total(servers)
                    server_cpu = cpu_after - cpu_before
                    loop_cpu = main_thread_cpu_seconds(looping) - loop_before
                    done = {k: v - before[k] for k, v in after.items()}
                    pairs = len(load["latencies"]) * args.documents
                    batched = max(done["reranker_batch_size_sum"], 1)
                    rows.append(Row("baseline" if code else "this", cores, processes, api_processes, concurrency,
                                    pairs / load["elapsed"],
                                    1000 * _percentile(load["latencies"], 50),
                                    1000 * _percentile(load["latencies"], 99), 1000 * server_cpu / max(pairs, 1),
                                    1000 * loop_cpu / max(pairs, 1),
                                    pairs / max(server_cpu, 1e-9),
                                    1000 * done["reranker_forward_seconds_sum"] / batched,
                                    batched / max(done["reranker_batch_size_count"], 1), load["cpu"] / load["elapsed"],
                                    rate))  # fmt: skip
                    if load["failures"]:
                        notes.append(f"cores {cores}, c={concurrency}: {load['failures']} answers were not 200")
                if args.profile and processes == api_processes == 1:
                    notes += _profile_notes(servers[0], cores, args, bodies, folder)
            finally:
                for server in servers:
                    server.stop()
    return rows, notes


def _total(servers: list[PinnedServer]) -> tuple[float, dict[str, float]]:
    """CPU seconds and forward-pass counters, summed over the servers."""
    counters: dict[str, float] = collections.Counter()
    for server in servers:
        counters.update(server.counters())
    return sum(cpu_seconds(s.proc.pid) for s in servers), dict(counters)


def _profile_notes(server: PinnedServer, cores: str, args: argparse.Namespace, bodies: Path, folder: Path) -> list[str]:
    if shutil.which("py-spy") is None:
        return ["profile skipped: py-spy is not installed (pip install py-spy)"]
    concurrency = max(args.concurrency)
    load = subprocess.Popen(_command(["--load", str(server.port), str(concurrency), str(args.seconds)], cores, bodies),
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1)
        top = profile(server.proc.pid, max(3, args.seconds - 3), folder / f"profile-{cores}.txt")
    finally:
        load.wait()
    lines = [f"profile, cores {cores}, c={concurrency}: the server's busiest functions (share of samples)"]
    return lines + [f"  {share:6.1%}  {name}" for name, share in top]


def _command(extra: list[str], cores: str, bodies: Path) -> list[str]:
    return ["taskset", "-c", cores, sys.executable, __file__, *extra, "--bodies", str(bodies)]


def _self(extra: list[str], cores: str, workload_file: Path) -> str:
    result = subprocess.run(_command(extra, cores, workload_file), capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=lambda s: s.split(";"), default=["0", "0-1"],
                        help="CPU sets for taskset, ';'-separated (default '0;0-1': one core, then two)")  # fmt: skip
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[4, 16, 32])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--doc-tokens", type=int, default=130)
    parser.add_argument("--profile", action="store_true", help="py-spy the server at the highest concurrency")
    parser.add_argument("--model", choices=("near-free", "minilm"), default="near-free",
                        help="minilm: the MiniLM-L6 cross-encoder, to check a real model lost nothing")  # fmt: skip
    parser.add_argument("--server-env", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                        help="NAME=VALUE for the server (repeatable): one design against another")  # fmt: skip
    parser.add_argument("--processes", type=lambda s: [int(n) for n in s.split(",")], default=[1],
                        help="server processes sharing the cores, ','-separated counts (default 1)")  # fmt: skip
    parser.add_argument("--api-processes", type=lambda s: [int(n) for n in s.split(",")], default=[1],
                        help="API_PROCESSES of one server, ','-separated counts (default 1)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="measure every layout this many times, interleaved")
    parser.add_argument("--baseline", type=Path, help="a checkout whose one-process server runs first, for comparison")
    parser.add_argument("--write", type=Path, help="also write the report to this file")
    # the helper processes this script starts for itself
    parser.add_argument("--load", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        ports, concurrency, seconds = args.load
        print(json.dumps(generate_load([int(p) for p in ports.split(",")], args.bodies, int(concurrency),
                                       float(seconds))))  # fmt: skip
        return
    if args.tokenizer:
        workload = [(b["query"], b["texts"]) for b in map(json.loads, args.bodies.read_text().splitlines())]
        print(json.dumps({"rate": tokenizer_rate(Path(args.tokenizer), workload, 10.0)}))
        return
    report(args)


def report(args: argparse.Namespace) -> None:
    from benchmarks.run_benchmark import machine
    from tests.model_fixtures import minilm_cross_dir, near_free_cross_dir

    model_dir = near_free_cross_dir() if args.model == "near-free" else minilm_cross_dir()
    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        rows, notes = measure(args, model_dir, Path(folder))
    lines = [
        f"# Pipeline ceiling, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores here; flags {info['flags']}; python {info['python']}, "
        f"torch {info['torch']}. Model: {model_dir.name}; "
        f"{args.documents} documents x ~{args.doc_tokens} tokens per request, unique texts, CACHE_SIZE=0, "
        f"DTYPE=float32, TOKENIZERS_PARALLELISM unset; {args.seconds:.0f} s per row."
        + (f" Server env: {' '.join(f'{k}={v}' for k, v in args.server_env)}." if args.server_env else ""),
        "",
        HEADER,
        *(row.line() for row in rows),
        *(
            ["", f"Medians of {args.rounds} interleaved rounds:", "", HEADER, *(row.line() for row in medians(rows))]
            if args.rounds > 1
            else []
        ),
        "",
        *notes,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)


if __name__ == "__main__":
    main()
