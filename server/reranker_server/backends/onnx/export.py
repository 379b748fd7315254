"""ONNX graphs of encoder checkpoints, exported once per checkpoint and kept on disk.

A graph is keyed by what it is made from: the checkpoint directory and its weight files (name,
size, mtime), the model kind and head, the opset, and the exporter's and quantizer's versions.
It lives in ``<cache>/<model>-<key>/model.onnx``, written into a scratch directory first and
renamed into place, so a crash never leaves a half-written graph; a second process making the
same graph waits for the first, and a try that was killed is not repeated (``graph_lock``). The
float32 graph is exported, then fused (``fusion``); int8 is quantized from the float32
graph, so ``DTYPE=auto`` (which measures both on CPUs without native bf16) exports once, and a
restarted container whose cache survived (an emptyDir at ``$HF_HOME``, the pod's own) exports
nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

from reranker_server.backends.onnx.fusion import fuse, root_logger_quiet
from reranker_server.backends.onnx.graph_lock import EarlierTryKilled, making
from reranker_server.model.checkpoint import Checkpoint
from reranker_server.model.hardware import int8_needs_reduced_range, memory_headroom

logger = logging.getLogger(__name__)

GRAPH_FILE = "model.onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX opset of the export: 17 has LayerNormalization as one op (ORT's fused kernel).
_OPSET = 17
# Bump when the exported graph changes for the same inputs (EncoderRows, export arguments).
_FORMAT = 3
# Past this many bytes of weights a graph keeps them in a side file: protobuf's limit is 2 GiB.
EXTERNAL_DATA_BYTES = 1_800_000_000
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")
# Peak memory of making a graph, in multiples of the checkpoint's float32 weights. Measured on a
# 560M-parameter XLM-R (2.2 GB of weights, bge-reranker-large's shape): exporting and fusing
# peaked at 4.7 GiB (the torch model and the serialized graph; the fusions after it 2.5 GiB), int8
# quantization at 8.3 GiB (onnx loads the graph, shape inference copies it, the quantizer writes a
# third). On the CPU profile's 4 GiB limit either would be OOM-killed, so they run only where the
# container has the room.
EXPORT_PEAK = 2.3
QUANTIZE_PEAK = 4.0
_HALF_PRECISION = ("float16", "bfloat16")
# Graphs are made in a scratch directory named by their key and renamed into place. A try that was
# killed (an OOM-killed loader Job or pod) leaves its half-made graph, GBs for a large encoder, on
# the model volume: the next maker of that key removes it (it holds the key's lock, so no live try
# writes there), and any scratch nothing has written to for an hour goes too (keys nobody makes
# again). The longest making measured, a 560M-parameter XLM-R, took about two minutes.
SCRATCH_PREFIX = ".partial-"
STALE_SCRATCH_SECONDS = 3600


class GraphTooLarge(RuntimeError):
    """Making the graph would need more memory than the container has left."""


def float32_weight_bytes(checkpoint: Checkpoint) -> int:
    """The checkpoint's weights as float32 in memory (half-precision files count twice)."""
    files = list(checkpoint.path.glob("*.safetensors")) or list(checkpoint.path.glob("*.bin"))
    stored = sum(p.stat().st_size for p in files)
    dtype = checkpoint.config.get("torch_dtype") or checkpoint.config.get("dtype")
    return stored * 2 if dtype in _HALF_PRECISION else stored


def _ensure_room(checkpoint: Checkpoint, what: str, factor: float, headroom: int | None) -> None:
    needed = int(factor * float32_weight_bytes(checkpoint))
    if headroom is not None and needed > headroom:
        raise GraphTooLarge(
            f"{what} {checkpoint.model_id} for ONNX Runtime needs about {needed / 2**30:.1f} GiB and this "
            f"container has {headroom / 2**30:.1f} GiB left: raise its memory limit, or set ENGINE=pytorch"
        )


def default_cache_dir() -> Path:
    """Next to the hub cache (the operator mounts ``$HF_HOME`` on the model volume)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "reranker-onnx"


def graph_key(checkpoint: Checkpoint, dtype: str) -> str:
    """What the graph is made from, hashed: a changed weight file or library makes a new key."""
    files = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in checkpoint.path.iterdir()
        if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
    )
    libraries = ["torch", "transformers", "onnx", "onnxruntime"]  # onnxruntime fuses and quantizes
    made_of = {
        "path": str(checkpoint.path.resolve()),
        "files": files,
        "kind": checkpoint.kind,
        "pooling": checkpoint.pooling,
        "dtype": dtype,
        "reduce_range": dtype == "int8" and int8_needs_reduced_range(),
        "opset": _OPSET,
        "format": _FORMAT,
        "versions": {name: version(name) for name in libraries},
    }
    digest = hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]
    label = checkpoint.path.name if checkpoint.source.startswith("local:") else checkpoint.model_id
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '--', label).strip('-')[:80]}-{dtype}-{digest}"


def export(checkpoint: Checkpoint, path: Path) -> None:
    """Write the checkpoint's EncoderRows module as ONNX with dynamic batch and length."""
    import torch

    from reranker_server.backends.onnx.encoder_rows import EncoderRows

    module = EncoderRows(checkpoint, attention="eager")  # the pattern onnx_fusion fuses
    names = list(_INPUTS if module.uses_token_types else _INPUTS[:2])
    # The example batch is ragged on purpose: transformers drops an all-ones attention mask while
    # tracing, and the graph would then ignore padding for every later batch.
    ids = torch.full((2, 8), 101, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    example = (ids, mask, torch.zeros_like(ids))[: len(names)]
    axes = {name: {0: "batch", 1: "length"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # the TorchScript exporter (dynamo=False): no onnxscript needed, and the tracer's warnings
        # about shape-dependent Python in transformers are about shapes we declare dynamic
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=names, output_names=["rows"],
                          dynamic_axes=axes | {"rows": {0: "batch"}}, opset_version=_OPSET, dynamo=False)  # fmt: skip


def make_float32(checkpoint: Checkpoint, directory: Path) -> None:
    """The checkpoint's float32 graph in ``directory``: exported, then fused where that checks out."""
    exported = directory / "exported"
    exported.mkdir()
    export(checkpoint, exported / GRAPH_FILE)
    if not fuse(checkpoint, exported / GRAPH_FILE, directory / GRAPH_FILE, _external_data(checkpoint)):
        for path in exported.iterdir():  # the graph and any weight files the exporter wrote beside it
            path.rename(directory / path.name)
    shutil.rmtree(exported)


def quantize(checkpoint: Checkpoint, source: Path, target: Path) -> None:
    """Dynamic int8: weights int8 per output channel, activations quantized per batch (as torch's
    int8), 7-bit weights where the CPU lacks VNNI. On the seeded MiniLM-L6 cross-encoder of the
    tests, per-channel 7-bit weights ranked closer to float32 than per-tensor 8-bit ones (Spearman
    0.94-0.96 against 0.87-0.90 on the AMD EPYC VM) at the same speed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with root_logger_quiet():
        # DefaultTensorType: shape inference can't type the outputs of the fused (contrib) ops
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=int8_needs_reduced_range(), use_external_data_format=_external_data(checkpoint),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip


def _external_data(checkpoint: Checkpoint) -> bool:
    return float32_weight_bytes(checkpoint) > EXTERNAL_DATA_BYTES


def _temp_cache() -> Path:
    return Path(tempfile.gettempdir()) / "reranker-onnx"


def _writable_cache(preferred: Path) -> Path:
    """The preferred cache when it can be written (a read-only model volume can't), else a temp one."""
    for candidate in (preferred, _temp_cache()):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise OSError(f"no writable directory for ONNX graphs ({preferred} nor the temp directory)")


def remove_stale_scratch(root: Path, now: float | None = None) -> None:
    """Delete the scratch directories in ``root`` that nothing has written to for an hour."""
    now = time.time() if now is None else now
    for scratch in root.glob(SCRATCH_PREFIX + "*"):
        try:
            touched = max(p.stat().st_mtime for p in (scratch, *scratch.rglob("*")))
        except OSError:
            continue  # another process removed or renamed it as we looked
        if now - touched > STALE_SCRATCH_SECONDS:
            logger.info("removing %s, left by a try that did not finish", scratch)
            shutil.rmtree(scratch, ignore_errors=True)


def _remove_scratch_of(root: Path, key: str) -> None:
    for scratch in root.glob(f"{SCRATCH_PREFIX}{key}-*"):
        shutil.rmtree(scratch, ignore_errors=True)


def _make(checkpoint: Checkpoint, source: Path | None, root: Path, key: str) -> None:
    """Make the graph (exported, or quantized from ``source``) in scratch and rename it to ``root/key``."""
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{key}-", dir=root))
    try:
        if source is None:
            make_float32(checkpoint, scratch)
        else:
            quantize(checkpoint, source, scratch / GRAPH_FILE)
        try:
            scratch.rename(root / key)  # atomic; a process on a file system without locks may have won
        except OSError:
            if not (root / key / GRAPH_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def graph_for(checkpoint: Checkpoint, dtype: str, cache_dir: Path | None = None) -> Path:
    """The ONNX graph of a checkpoint in float32 or int8: from the cache, else made and cached."""
    preferred = cache_dir or default_cache_dir()
    key = graph_key(checkpoint, dtype)
    for root in dict.fromkeys((preferred, _temp_cache())):
        if (root / key / GRAPH_FILE).is_file():
            logger.info("ONNX graph from the cache: %s", root / key)
            return root / key / GRAPH_FILE
    source = graph_for(checkpoint, "float32", cache_dir) if dtype == "int8" else None
    what, peak = ("exporting", EXPORT_PEAK) if source is None else ("quantizing", QUANTIZE_PEAK)
    _ensure_room(checkpoint, what, peak, memory_headroom())
    root = _writable_cache(preferred)
    try:
        with making(root, key) as locked:  # waits while another process makes this graph
            if (root / key / GRAPH_FILE).is_file():
                logger.info("ONNX graph from the cache, made by another process meanwhile: %s", root / key)
                return root / key / GRAPH_FILE
            if locked:  # any scratch of this graph is a dead try's: nobody else makes it while we hold the lock
                _remove_scratch_of(root, key)
            remove_stale_scratch(root)
            _make(checkpoint, source, root, key)
    except EarlierTryKilled:
        _remove_scratch_of(root, key)  # the killed try's half-made graph
        raise
    logger.info("ONNX graph made (%s) and cached: %s", dtype, root / key)
    return root / key / GRAPH_FILE
