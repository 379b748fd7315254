"""MLX backend for LLM rerankers, through mlx-lm's own model implementations and loader.

mlx-lm knows the decoder families (Qwen3, Gemma, ...) and reads their Hugging Face checkpoints,
4/8-bit quantized ones included (``quantization`` in config.json). Its attention mask is causal
only, which is exactly right for right-padded rows: no real token attends to the pads after it,
so each row's last real position is what it would be alone.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.backends.mlx_backend import quantize_linear
from reranker_server.model.checkpoint import Checkpoint

_MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def _head_rows(model: Any, ids: tuple[int, ...]) -> mx.array:
    """The LM head's rows for the answer tokens, in float32 (dequantized if the head is quantized)."""
    head = getattr(model, "lm_head", None) or model.model.embed_tokens  # tied embeddings
    index = mx.array(list(ids))
    if hasattr(head, "scales"):  # quantized: packed weights with per-group scales and biases
        rows = mx.dequantize(head.weight[index], head.scales[index], head.biases[index], head.group_size, head.bits)
    else:
        rows = head.weight[index]
    return rows.astype(mx.float32)


class MlxLmBackend(Backend):
    name = "mlx"
    device = "mlx"

    def __init__(self, checkpoint: Checkpoint, dtype: str = "float32", quantize_bits: int = 0) -> None:
        from mlx_lm.utils import load_model

        self._model, _ = load_model(checkpoint.path)
        self._model.set_dtype(_MX_DTYPES[dtype])
        rows = _head_rows(self._model, checkpoint.answer_ids)  # before quantizing: the exact rows
        self._answer = rows[0] - rows[1] if len(checkpoint.answer_ids) > 1 else rows[0]
        if quantize_bits:
            quantize_linear(self._model, quantize_bits)
        self._model.eval()
        mx.eval(self._model.parameters(), self._answer)
        bits = quantize_bits or (checkpoint.config.get("quantization") or {}).get("bits")  # or quantized on disk
        self.dtype = f"{dtype}+q{bits}" if bits else dtype
        self.device = f"mlx:{mx.default_device()}"

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        ids = mx.array(batch.input_ids.astype(np.int32))
        hidden = self._model.model(ids)  # (batch, length, hidden), after the final norm
        last = mx.array(batch.attention_mask.sum(axis=1) - 1)
        final = hidden[mx.arange(hidden.shape[0]), last].astype(mx.float32)
        return np.array(final @ self._answer)[:, None]
