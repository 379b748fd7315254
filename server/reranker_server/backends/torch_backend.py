"""PyTorch backend: cross-encoders and bi-encoders on cuda, mps or cpu."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.model.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, checkpoint: Checkpoint, device: str, dtype: str, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the server logs its own "loaded" line
        if device == "cpu" and threads:
            torch.set_num_threads(threads)
        if device.startswith("cuda"):
            # cuDNN's attention builds a plan for every new (batch, length) shape, ~50 ms each, and a
            # server's batches rarely repeat a shape: on an H100, float16 over HTTP ran at 320 pairs/s
            # with it against 2,190 in float32 (benchmarks/cuda_check.py). Flash and memory-efficient
            # attention need no per-shape plan.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self._torch = torch
        self._device = torch.device(device)
        if checkpoint.kind == "llm-yes-no":
            causal: Any = AutoModelForCausalLM.from_pretrained(str(checkpoint.path), dtype=torch.float32)
            self._model = causal.eval()
            self._answer = self._answer_row(checkpoint.answer_ids)
        else:
            from reranker_server.backends.onnx.encoder_rows import EncoderRows

            self._model = EncoderRows(checkpoint)
            self._answer = None
        self._model.to(self._device)
        self.device = str(self._device) if self._device.type != "cuda" else f"cuda:{self._device.index or 0}"
        self.dtype = "float32"
        self.to_dtype(dtype)

    def _answer_row(self, answer_ids: tuple[int, ...]) -> Any:
        """W[yes] - W[no] of the LM head (or W[yes] alone), float32: the score needs this one row of
        the vocabulary projection, never all of it (vLLM folds it the same way)."""
        weight = self._model.get_output_embeddings().weight.detach().float()
        row = weight[answer_ids[0]] - (weight[answer_ids[1]] if len(answer_ids) > 1 else 0)
        return row.to(self._device)

    def to_dtype(self, dtype: str) -> None:
        if dtype == "int8":
            self._quantize_int8()
            return
        self._model.to(getattr(self._torch, _TORCH_DTYPES[dtype]))
        self.dtype = dtype

    def _quantize_int8(self) -> None:
        """Dynamic int8 quantization of the linear layers (weights int8, activations quantized per
        batch): CPUs without native bf16 get a faster path than float32 (DTYPE=auto measures it)."""
        torch = self._torch
        if self._device.type != "cpu":
            raise ValueError(f"DTYPE=int8 runs on CPUs only (dynamic quantization), not {self._device.type}")
        import warnings

        with warnings.catch_warnings():  # torch.ao's deprecation notices (its successor is torchao)
            warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
            # in place: a copy would hold a second float32 model at start-up
            self._model = torch.ao.quantization.quantize_dynamic(
                self._model.float(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
        self.dtype = "int8"

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(batch.input_ids).to(self._device)
            mask = torch.from_numpy(batch.attention_mask).to(self._device)
            if self._answer is not None:  # LLM reranker: the last real token's hidden state . the answer row
                decoder = getattr(self._model, self._model.base_model_prefix)
                hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
                last = mask.sum(dim=1) - 1  # right-padded: each row's own last position
                final = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
                result: np.ndarray = (final @ self._answer).unsqueeze(1).cpu().numpy()
                return result
            types = torch.from_numpy(batch.token_type_ids).to(self._device)
            rows: np.ndarray = self._model(ids, mask, types).cpu().numpy()
        return rows

    def release_memory(self) -> None:
        if self._device.type == "mps":
            self._torch.mps.empty_cache()
