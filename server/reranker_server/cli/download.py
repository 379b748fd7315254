"""``reranker-server download MODEL``: fill a model cache (``model.hub``) and make the CPU engine's graphs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reranker_server.model.hub import DownloadError, download, wait_for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranker-server download",
        description="Download a model into a Hugging Face cache (resumable, verified) for servers run with "
        "HF_HUB_OFFLINE=1. The hub is HF_ENDPOINT; a gated model needs HF_TOKEN.",
    )
    parser.add_argument("model", help="hub id, e.g. BAAI/bge-reranker-v2-m3")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="hub cache directory (default HF_HUB_CACHE)")
    parser.add_argument("--wait", action="store_true", help="download nothing: wait until the cache holds it")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between checks with --wait")
    parser.add_argument(
        "--onnx",
        type=_onnx_dtypes,
        default=(),
        metavar="DTYPES",
        help="also make the ONNX graphs the server's CPU engine runs (encoders), e.g. float32,int8, in "
        "ONNX_CACHE_DIR (default $HF_HOME/reranker-onnx): servers that mount this cache read-only start from them",
    )
    return parser


def _onnx_dtypes(text: str) -> tuple[str, ...]:
    dtypes = tuple(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not dtypes or not set(dtypes) <= {"float32", "int8"}:
        raise argparse.ArgumentTypeError(f"float32 and/or int8, comma-separated, not {text!r}")
    return dtypes


def say(message: str) -> None:
    print(f"reranker-server download: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    from huggingface_hub import constants, get_token

    args = build_parser().parse_args(argv)
    cache_dir = args.cache_dir or Path(constants.HF_HUB_CACHE)
    if args.wait:
        path = wait_for(cache_dir, args.model, args.revision, args.poll, say)
    else:
        try:
            path = download(args.model, args.revision, cache_dir, get_token(), bar=sys.stderr.isatty())
        except DownloadError as exc:
            raise SystemExit(f"reranker-server download: {exc}") from None
        for dtype in args.onnx:
            made, message = make_cpu_graph(args.model, args.revision, path, dtype)
            say(message)
            if not made:
                break  # int8 is made from the float32 graph
    say(f"{args.model} is ready in {path}")


def make_cpu_graph(model: str, revision: str | None, snapshot: Path, dtype: str) -> tuple[bool, str]:
    """Make the ONNX graph a server reading this cache will look for; (made, what happened).

    Server pods mount the loader's volume read-only, so without it each pod exports the model to
    its own /tmp at every start (18 s instead of 7 s for MiniLM-L6, minutes for a large model), and
    one whose memory limit can't hold the export runs PyTorch. Never fails the download: a server
    that finds no graph makes its own, or runs PyTorch. An int8 graph is keyed by whether the CPU
    has VNNI: pods on nodes of another kind than the loader's quantize for themselves.
    """
    from reranker_server.backends.onnx.backend import onnxruntime_available
    from reranker_server.backends.onnx.export import default_cache_dir, graph_for
    from reranker_server.core.settings import Settings
    from reranker_server.model.checkpoint import ENCODER_KINDS, CheckpointError, cache_source, read

    try:
        # the model as the server will see it: the same path, id and source make the same graph key
        checkpoint = read(snapshot, model, cache_source(model), revision)
    except CheckpointError as exc:
        return False, f"no ONNX graph: {exc}"
    if checkpoint.kind not in ENCODER_KINDS:
        return False, f"no ONNX graph: ONNX Runtime serves encoders, not {checkpoint.kind}"
    if not onnxruntime_available():
        return False, "no ONNX graph: onnxruntime is not installed"
    fallback = "each server makes its own or runs PyTorch"
    cache_dir = Settings().onnx_cache_dir or default_cache_dir()  # ONNX_CACHE_DIR as the server reads it
    try:  # a try that was killed before (out of memory, most likely) is not repeated: graph_lock
        graph = graph_for(checkpoint, dtype, cache_dir)
    except Exception as exc:  # the servers make their own (or run PyTorch): the download stands
        return False, f"no {dtype} ONNX graph ({type(exc).__name__}: {exc}); {fallback}"
    return True, f"{dtype} ONNX graph for the CPU engine in {graph.parent}"
