"""ONNX Runtime backend: encoder checkpoints on CPUs, float32 or int8.

The checkpoint's graph comes from ``onnx_export`` (exported and fused by ``onnx_fusion`` at the
first start, then cached on disk) and runs in one InferenceSession. Why, on the 2-core AMD EPYC
VM of benchmarks/RESULTS.md (onnxruntime 1.32, torch 2.13): the whole forward pass is one C++
call that releases the GIL, where eager torch takes it back after every kernel; in the server the
two compute threads then used 1.85 cores instead of 1.56, and short pairs (45 tokens) went from
0.82x to 1.05x of the in-process CrossEncoder.predict rate (1.07x with the fused graph). On
141-token pairs, where the GEMMs dominate, the plain export was level with torch, the fused graph
1.07x. Its int8 is faster than torch's (1.54x vs 1.07x of predict on short pairs).
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
    # No memory patterns: ORT plans one block per input shape, and the server's shapes (pairs x
    # longest) rarely repeat, so the plan is seldom reused while its blocks fragment the arena,
    # which then grows by another ~80 MiB long after warm-up: int8 soaks at c=16 grew 10.0%,
    # 10.1%, 18.0% and 1.0% with them, 0.1%, 0.1%, 0.3% and 0.5% without; float32 0.3%.
    # Pairs/s without, server over HTTP, c=4, two servers interleaved (AMD EPYC VM): short
    # pairs int8 1.12x, float32 0.94x and 1.01x; 141-token int8 0.99x, float32 0.97x
    # (benchmarks/RESULTS.md): within this VM's noise.
    options.enable_mem_pattern = False
    # Idle intra-op threads sleep instead of spinning: spinning took the cores the tokenizer and the
    # event loop need between forward passes, for no faster forward (docs/performance.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options


def open_session(path: Path, options: Any) -> Any:
    """An InferenceSession on the CPU that keeps the residual Add + LayerNorm as two kernels.

    onnx_fusion leaves them unfused, and ONNX Runtime would fuse them again at load: its
    SkipLayerNormalization (1.32) took 1.3 ms where Add + LayerNormalization took 0.33 on
    [1000, 384], and without it whole batches ran 5-9% (float32) and 7% (int8) faster on the AMD
    EPYC VM (MiniLM-L6, 20 x 50 and 32 x 150 tokens, interleaved; benchmarks/RESULTS.md).
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
        # The arena keeps every chunk its largest batch needed. Shrinking after every run kept RSS at
        # ~160 MiB but cost ~6% of throughput (pages faulted in again per batch), so the arena
        # shrinks when the queue drains: one burst of 141-token batches took RSS 491 -> 185 MiB
        # (benchmarks/RESULTS.md).
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
