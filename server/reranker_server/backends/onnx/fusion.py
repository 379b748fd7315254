"""ONNX Runtime's transformer fusions on an exported encoder graph, kept only where they check out.

The exporter writes attention as a dozen small ops per layer; ONNX Runtime's offline optimizer
(``onnxruntime.transformers.optimizer``, model type ``bert``: BERT, RoBERTa, XLM-R and their
kin) folds them into one ``Attention`` kernel per layer (with the Q, K and V projections as one
GEMM), the embeddings into ``EmbedLayerNormalization`` and bias + GELU into ``BiasGelu`` (not
residual + LayerNorm into ``SkipLayerNormalization``: slower, see ``backend``); what they gained,
and on which models: docs/design/cpu-engine.md#decisions. The patterns are the eager attention's,
so the export uses transformers' eager attention (its sdpa one also exports a NaN guard,
``Where(IsNaN)`` over every score, that alone took 12-15% of the time).

A graph the fusions don't fit (another architecture) comes out unchanged or partly fused; either
way the fused graph is run next to the unfused one on ragged batches and kept only if their rows
agree, so a fusion can cost speed at worst, never a wrong score.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reranker_server.model.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

# Fused kernels sum in another order: float32 rows moved by < 1e-6 on MiniLM and XLM-R.
_TOLERANCE = 1e-4


@contextmanager
def root_logger_quiet() -> Iterator[None]:
    """onnxruntime's fusion and quantization modules log warnings meant for their command lines on
    loggers that answer to the root logger: raised to ERROR while they run (at start-up only)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _check_batches(config: dict[str, Any], uses_token_types: bool) -> list[dict[str, np.ndarray]]:
    """Two ragged batches of shapes unlike each other, padded as the tokenizer pads."""
    vocabulary, pad_id = int(config.get("vocab_size", 1000)), int(config.get("pad_token_id") or 0)
    batches = []
    for rows, length in ((3, 7), (2, 12)):
        ids = np.tile(5 + (np.arange(length) * 7) % (vocabulary - 5), (rows, 1)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[-1, length // 2 :] = 0
        ids[mask == 0] = pad_id
        batch = {"input_ids": ids, "attention_mask": mask}
        if uses_token_types:
            batch["token_type_ids"] = np.zeros_like(ids)
        batches.append(batch)
    return batches


def _rows(path: Path, config: dict[str, Any]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    uses_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
    return [session.run(None, batch)[0] for batch in _check_batches(config, uses_token_types)]


def fuse(checkpoint: Checkpoint, source: Path, target: Path, external_data: bool) -> bool:
    """Write ``source`` fused to ``target`` (its weights in ``target.data`` with ``external_data``)
    and say True, or write nothing, log why, and say False."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config: dict[str, Any] = checkpoint.config
    # Attention fusion needs every tensor's shape. The optimizer's own shape inference copies the
    # whole model in Python: 14.4 GiB and 91 s on a 560M-parameter XLM-R (2.2 GB of weights).
    # onnx's path-based inference writes the shapes into a copy of the graph beside the exporter's
    # (so its weight files resolve), and the fusions then ran in 11 s at 2.5 GiB, all of them fused.
    shaped = source.with_name("shaped-" + source.name)
    options = FusionOptions("bert")
    options.enable_shape_inference = False
    options.enable_skip_layer_norm = False  # slower than Add + LayerNormalization: onnx_backend says why
    try:
        onnx.shape_inference.infer_shapes_path(str(source), str(shaped))
        # opt_level=0: only the Python fusions; the session applies its own optimizations at load
        heads, hidden = int(config.get("num_attention_heads", 0)), int(config.get("hidden_size", 0))
        with root_logger_quiet():
            fused = optimize_model(str(shaped), model_type="bert", opt_level=0, num_heads=heads,
                                   hidden_size=hidden, optimization_options=options)  # fmt: skip
        counts = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        if not counts:
            logger.info("ONNX Runtime's fusions do not fit %s: its graph stays as exported", checkpoint.model_id)
            return False
        fused.save_model_to_file(str(target), use_external_data_format=external_data)
        del fused
        agree = all(
            np.allclose(a, b, atol=_TOLERANCE, rtol=_TOLERANCE)
            for a, b in zip(_rows(target, config), _rows(source, config), strict=True)
        )
    except Exception as exc:  # the optimizer met a graph it can't take: the unfused graph serves
        logger.warning("ONNX Runtime's fusions failed on %s (%s): graph kept as exported", checkpoint.model_id, exc)
        _remove(target)
        return False
    finally:
        shaped.unlink(missing_ok=True)
    if not agree:
        logger.warning("the fused graph of %s disagrees with the exported one: not used", checkpoint.model_id)
        _remove(target)
        return False
    logger.info("ONNX graph of %s fused: %s", checkpoint.model_id, counts)
    return True


def _remove(graph: Path) -> None:
    for path in (graph, graph.with_name(graph.name + ".data")):
        path.unlink(missing_ok=True)
