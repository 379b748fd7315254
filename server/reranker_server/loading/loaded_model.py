"""A model ready to serve: its checkpoint, tokenizer, backend and task, and why this dtype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reranker_server.backends import Backend, pad
from reranker_server.model.checkpoint import Checkpoint
from reranker_server.model.encoding import Encoder
from reranker_server.model.tasks import ScoreOptions, Task


@dataclass
class LoadedModel:
    checkpoint: Checkpoint
    encoder: Encoder
    backend: Backend
    fallback_reason: str | None
    dtype_note: str  # why this dtype, for /info
    task: Task

    def score_sync(self, query: str, documents: list[str]) -> np.ndarray:
        """Raw scores without batching or caching (calibration, warm-up, tests)."""
        encoded = self.task.encode(query, documents, ScoreOptions())
        return self.task.raw(self.backend.forward(pad(encoded.sequences, self.encoder.pad_id)))
