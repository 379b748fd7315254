"""ONNX Runtime backend: encoder checkpoints on CPUs, float32 or int8.

The checkpoint is exported from its transformers model at start-up (a few seconds for MiniLM-L6)
into a temporary directory, quantized there for int8, and run by one InferenceSession. Why, on
the 2-core AMD EPYC VM of benchmarks/RESULTS.md (onnxruntime 1.32, torch 2.13): the whole forward
pass is one C++ call that releases the GIL, where eager torch takes it back after every kernel;
in the server the two compute threads then used 1.85 cores instead of 1.56, and short pairs (45
tokens) went from 0.82x to 1.05x of the in-process CrossEncoder.predict rate. On 141-token pairs,
where the GEMMs dominate, the two engines are level. Its int8 is faster than torch's (1.55x vs
1.15x of predict on short pairs).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from . import Backend, PaddedBatch

DTYPES = ("float32", "int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX opset of the export: 17 has LayerNormalization as one op (ORT's fused kernel).
_OPSET = 17


def onnxruntime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def _export(checkpoint: Checkpoint, path: Path) -> list[str]:
    """Write the checkpoint's EncoderRows module as ONNX with dynamic batch and length; its input names."""
    import torch

    from .encoder_rows import EncoderRows

    module = EncoderRows(checkpoint)
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
    return names


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: weights int8 per tensor, activations quantized per batch (as torch's int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()  # onnxruntime.quantization warns on the root logger
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    finally:
        quant_logger.setLevel(level)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, checkpoint: Checkpoint, dtype: str, threads: int | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"ENGINE=onnxruntime runs float32 or int8, not {dtype}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        with tempfile.TemporaryDirectory(prefix="reranker-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            self._inputs = _export(checkpoint, path)
            if dtype == "int8":
                _quantize(path, Path(tmp) / "model.int8.onnx")
                path = Path(tmp) / "model.int8.onnx"
            # the session reads the file (and any external weights) now; the directory can go after
            self._session: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.device = "cpu"
        self.dtype = dtype

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in self._inputs}
        rows: np.ndarray = self._session.run(None, feeds)[0]
        return rows.astype(np.float32, copy=False)
