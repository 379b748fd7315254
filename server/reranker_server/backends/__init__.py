"""Layer 5, backends: the backend interface, a model that turns padded token batches into output rows.

Tokenizing (``encoding.Encoder``) and turning rows into scores (``scoring``) are shared by every
backend, so a backend is only the forward pass, in the spirit of TEI's python ``Model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np

from reranker_server.model.encoding import Sequence


@dataclass(frozen=True)
class PaddedBatch:
    input_ids: np.ndarray  # int64 (batch, length)
    attention_mask: np.ndarray  # int64 (batch, length)
    token_type_ids: np.ndarray  # int64 (batch, length)

    @property
    def tokens(self) -> int:
        return int(self.input_ids.size)


def pad(sequences: Seq[Sequence], pad_id: int) -> PaddedBatch:
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    types = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq.ids
        mask[row, : len(seq)] = 1
        types[row, : len(seq)] = seq.type_ids
    return PaddedBatch(ids, mask, types)


class Backend(ABC):
    name: str  # "pytorch" | "onnxruntime" | "mlx"
    device: str  # "cpu", "cuda:0", "mps", "mlx"
    dtype: str  # "float32", "float16", "bfloat16"

    @abstractmethod
    def forward(self, batch: PaddedBatch) -> np.ndarray:
        """Cross-encoders: float32 logits (batch, labels). Bi-encoders: pooled embeddings (batch, dim)."""

    def release_memory(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Give cached device memory back between batches (MPS); a no-op elsewhere."""

    def idle(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Nothing is waiting to run: give back memory kept for the next batch (ONNX Runtime's arena)."""
