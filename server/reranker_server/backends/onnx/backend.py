"""ONNX Runtime backend: encoder checkpoints on CPUs, float32 or int8.

The checkpoint's graph comes from ``export`` (exported and fused by ``fusion`` at the first start,
then cached on disk) and runs in one InferenceSession: the forward pass is one C++ call that
releases the GIL (docs/design/cpu-engine.md#decisions).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from reranker_contract.server_env import ONNX_RUNTIME_DTYPES
from reranker_server.backends import Backend, PaddedBatch
from reranker_server.backends.onnx.export import graph_for
from reranker_server.model.checkpoint import Checkpoint

logger = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def session_options(threads: int | None) -> Any:
    """The server's session options (benchmarks/engine_ceiling.py times the graph with them too)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    # no memory patterns: the server's batch shapes rarely repeat, and their blocks fragment the arena
    options.enable_mem_pattern = False
    # Idle intra-op threads sleep instead of spinning: spinning took the cores the tokenizer and the
    # event loop need between forward passes, for no faster forward (docs/performance.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options


def open_session(path: Path, options: Any) -> Any:
    """An InferenceSession on the CPU that keeps the residual Add + LayerNorm as two kernels.

    ``fusion`` leaves them unfused, and ONNX Runtime would fuse them again at load, slower
    (docs/design/cpu-engine.md#decisions).
    """
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["SkipLayerNormFusion"])  # fmt: skip


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self, checkpoint: Checkpoint, dtype: str, threads: int | None = None, cache_dir: Path | None = None
    ) -> None:
        if dtype not in ONNX_RUNTIME_DTYPES:
            raise ValueError(f"ENGINE=onnxruntime runs float32 or int8, not {dtype}")
        import onnxruntime as ort

        options = session_options(threads)
        path = graph_for(checkpoint, dtype, cache_dir)
        try:
            self._session: Any = open_session(path, options)
        except Exception as exc:  # a cached graph ORT can't read: drop it and make it again, once
            logger.warning("the cached ONNX graph %s does not load (%s); making it again", path, exc)
            shutil.rmtree(path.parent, ignore_errors=True)
            path = graph_for(checkpoint, dtype, cache_dir)
            self._session = open_session(path, options)
        self._inputs = [i.name for i in self._session.get_inputs()]
        # the arena shrinks when the queue drains, not after every batch (docs/design/cpu-engine.md#decisions)
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        one_token = {"input_ids": np.zeros((1, 1), np.int64), "attention_mask": np.ones((1, 1), np.int64),
                     "token_type_ids": np.zeros((1, 1), np.int64)}  # fmt: skip
        self._one_token = {name: one_token[name] for name in self._inputs}
        self.device = "cpu"
        self.dtype = dtype

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in self._inputs}
        rows: np.ndarray = self._session.run(None, feeds)[0]
        return rows.astype(np.float32, copy=False)

    def idle(self) -> None:
        self._session.run(None, self._one_token, self._shrink)  # frees the arena's unused chunks after it
