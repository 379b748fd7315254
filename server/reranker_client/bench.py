"""``reranker-bench``: load-test any Cohere/Jina- or TEI-shaped rerank endpoint.

Sends N requests at concurrency C (a sweep: ``--concurrency 1,4,16``), each with D documents of
about L tokens (synthetic text, or lines from ``--texts-file``), shows a live progress bar, and
prints pairs/s, requests/s, latency p50/p90/p99 and errors by status code; ``--json`` for
machines, ``--plot out.png`` (needs matplotlib) for throughput and latency against concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# common English words, most of them one word-piece token
_WORD_TEXT = (
    "the of and to in is that for it as with was on be by this are from at or an have not which but they "
    "model search query document river water valley city market energy system network data learning light "
    "result method study time people year way day world life hand part place case point government "
    "company number group problem fact research history science music story health policy price process "
    "service report growth design support project power level order change field reason result answer "
    "language"
)
_WORDS = _WORD_TEXT.split()


def synthetic_text(rng: random.Random, tokens: int) -> str:
    """About ``tokens`` word-piece tokens of sentence-like English (most of these words are one token)."""
    words: list[str] = []
    while len(words) < tokens:
        sentence = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        sentence[0] = sentence[0].capitalize()
        words.extend(sentence)
        words[-1] += "."
    return " ".join(words[:tokens])


def make_workload(
    requests: int, documents: int, doc_tokens: int, seed: int = 0, texts: list[str] | None = None
) -> list[tuple[str, list[str]]]:
    """(query, documents) per request, deterministic for a seed."""
    rng = random.Random(seed)
    workload = []
    for _ in range(requests):
        query = synthetic_text(rng, rng.randint(6, 12))
        if texts:
            docs = [rng.choice(texts) for _ in range(documents)]
        else:
            docs = [synthetic_text(rng, max(1, int(rng.gauss(doc_tokens, doc_tokens / 5)))) for _ in range(documents)]
        workload.append((query, docs))
    return workload


def body_for(api: str, query: str, docs: list[str]) -> tuple[str, dict[str, Any]]:
    if api == "tei":
        return "/rerank", {"query": query, "texts": docs, "truncate": True}
    if api == "infinity":  # Infinity's Cohere-like route, for side-by-side runs against it
        return "/rerank", {"query": query, "documents": docs, "return_documents": False}
    return "/v1/rerank", {"query": query, "documents": docs}


@dataclass
class RunResult:
    concurrency: int
    requests: int
    pairs: int
    seconds: float
    latencies: list[float] = field(repr=False)
    statuses: dict[str, int]

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "pairs_per_second": self.pairs / self.seconds if self.seconds else 0.0,
            "requests_per_second": self.ok / self.seconds if self.seconds else 0.0,
            "latency_p50_ms": self.percentile(50) * 1000,
            "latency_p90_ms": self.percentile(90) * 1000,
            "latency_p99_ms": self.percentile(99) * 1000,
            "errors": {k: v for k, v in self.statuses.items() if k != "200"},
            "seconds": self.seconds,
        }


class Progress:
    """A one-line live progress bar on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self.started = time.perf_counter()

    def advance(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(1, self.total))
        rate = self.done / max(1e-9, time.perf_counter() - self.started)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:5.1f} req/s"
        )
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def run(
    url: str,
    api: str,
    workload: Iterable[tuple[str, list[str]]],
    concurrency: int,
    request_timeout: float = 120.0,
    progress: bool = False,
    api_key: str | None = None,
    stop_at: float | None = None,
) -> RunResult:
    """Send ``workload`` at ``concurrency``. It may be endless (a generator) when ``stop_at`` (a
    ``time.monotonic()`` deadline) says when to stop taking new requests: a soak's steady stream."""
    items = iter(workload)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    pairs = sent = 0
    bar = Progress(len(workload) if isinstance(workload, Sized) else 0, f"c={concurrency:<3}", progress)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits, headers=headers) as client:

        async def worker() -> None:
            nonlocal pairs, sent
            while stop_at is None or time.monotonic() < stop_at:
                # one event loop, so workers share the iterator without a lock
                query, docs = next(items, (None, []))
                if query is None:
                    return
                sent += 1
                path, body = body_for(api, query, docs)
                started = time.perf_counter()
                try:
                    response = await client.post(path, json=body)
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                statuses[status] += 1
                if status == "200":
                    latencies.append(elapsed)
                    pairs += len(docs)
                bar.advance()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return RunResult(concurrency, sent, pairs, seconds, latencies, dict(statuses))


def format_table(results: list[RunResult]) -> str:
    columns = ("conc", "req", "ok", "pairs/s", "req/s", "p50 ms", "p90 ms", "p99 ms")
    widths = (5, 5, 5, 9, 7, 8, 8, 8)
    header = " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)) + "  errors"
    lines = [header]
    for r in results:
        s = r.summary()
        lines.append(
            f"{s['concurrency']:>5} {s['requests']:>5} {s['ok']:>5} {s['pairs_per_second']:>9.1f} "
            f"{s['requests_per_second']:>7.2f} {s['latency_p50_ms']:>8.1f} {s['latency_p90_ms']:>8.1f} "
            f"{s['latency_p99_ms']:>8.1f}  {s['errors'] or '-'}"
        )
    return "\n".join(lines)


def require_matplotlib() -> None:
    """Checked before the run, not after it: a missing plotting library shouldn't cost the results."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("reranker-bench: --plot needs matplotlib: pip install matplotlib") from None


def plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = [r.concurrency for r in results]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(conc, [r.summary()["pairs_per_second"] for r in results], "o-", color="tab:blue")
    left.set_xlabel("concurrency")
    left.set_ylabel("pairs/s", color="tab:blue")
    left.set_xscale("log", base=2)
    right = left.twinx()
    right.plot(conc, [r.summary()["latency_p50_ms"] for r in results], "s--", color="tab:red", label="p50")
    right.plot(conc, [r.summary()["latency_p99_ms"] for r in results], "^--", color="tab:orange", label="p99")
    right.set_ylabel("latency (ms)", color="tab:red")
    right.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranker-bench",
        description=__doc__.splitlines()[0] if __doc__ else "",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--api", choices=["cohere", "tei", "infinity"], default="cohere", help="request shape")
    parser.add_argument("--requests", "-n", type=int, default=100, help="requests per concurrency level")
    parser.add_argument("--concurrency", "-c", default="4", help="one level or a comma list: 1,4,16")
    parser.add_argument("--documents", "-d", type=int, default=32, help="documents per request")
    parser.add_argument("--doc-tokens", "-l", type=int, default=128, help="about this many tokens per document")
    parser.add_argument("--texts-file", type=Path, help="take documents from this file's lines instead")
    parser.add_argument(
        "--seed", type=int, default=None, help="repeat a run's texts (default: a new random seed, printed)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", type=Path, help="write a PNG of throughput and latency against concurrency")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.add_argument(
        "--api-key", default=os.environ.get("RERANKER_API_KEY"), help="sent as a Bearer token [env RERANKER_API_KEY]"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for name in ("requests", "documents", "doc_tokens"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    try:
        levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency must be integers like 1,4,16, got {args.concurrency!r}") from None
    if not levels or min(levels) < 1:
        raise SystemExit("--concurrency levels must be at least 1")
    texts = None
    if args.texts_file:
        texts = [line.strip() for line in args.texts_file.read_text().splitlines() if line.strip()]
        if not texts:
            raise SystemExit(f"--texts-file {args.texts_file} has no non-empty lines")
    if args.plot:
        require_matplotlib()
    # A new seed per run: the same texts twice would be answered from the server's score cache
    # (a second run measured 5428 pairs/s instead of 54).
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    print(f"seed {seed} (--seed {seed} repeats these texts)", file=sys.stderr)
    show = not args.no_progress and sys.stderr.isatty()
    results = []
    for index, level in enumerate(levels):
        # new texts per level: a reranker's score cache would otherwise answer the repeats
        workload = make_workload(args.requests, args.documents, args.doc_tokens, seed + 1000 * index, texts)
        results.append(asyncio.run(run(args.url, args.api, workload, level, args.timeout, show, args.api_key)))
    if args.json:
        print(json.dumps([r.summary() for r in results], indent=2))
    else:
        print(format_table(results))
    if args.plot:
        plot(results, args.plot)
    if all(r.ok == 0 for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
