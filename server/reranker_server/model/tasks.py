"""What each kind of reranker does with a query and its documents, decided once per model.

A ``Task`` turns (query, documents, options) into token sequences for the batcher, the rows the
backend returns into one raw score per document, and raw scores into the scores clients get.
Serving, calibration and the warm-up call the task; nothing else branches on the model's kind
(the way vLLM's scoring IO processors split it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import numpy as np

from reranker_server.model import scoring
from reranker_server.model.checkpoint import Checkpoint, ModelKind
from reranker_server.model.encoding import Chunking, Encoder, Sequence, TruncationSide
from reranker_server.model.templates import TEMPLATES, Template

Pooling = Literal["max", "mean", "first"]


@dataclass(frozen=True)
class ScoreOptions:
    raw_scores: bool = False
    truncate: bool = True
    side: TruncationSide = "right"
    max_tokens_per_doc: int | None = None
    instruction: str | None = None  # LLM rerankers with instructions; ignored by other models
    chunking: Chunking | None = None  # long documents in windows instead of cut
    pooling: Pooling = "max"  # the windows' raw scores -> the document's

    def variant(self, uses_instruction: bool) -> str:
        """The part of the cache key the options change (raw vs sigmoid is applied after)."""
        base = f"{self.truncate}|{self.side}|{self.max_tokens_per_doc}"
        if self.chunking is not None:
            base += f"|chunks {self.chunking.overlap} {self.chunking.max_chunks} {self.pooling}"
        return f"{base}|{self.instruction}" if uses_instruction else base


@dataclass(frozen=True)
class Encoded:
    sequences: list[Sequence]  # what the batcher runs
    tokens: list[int]  # input tokens per document (every window's), for usage
    chunks: list[int]  # sequences per document, in order

    @classmethod
    def of(cls, per_document: list[list[Sequence]], extra_tokens: int = 0) -> Encoded:
        """``extra_tokens``: counted once per document besides its own (a bi-encoder's query)."""
        return cls(
            [s for windows in per_document for s in windows],
            [extra_tokens + sum(len(s) for s in windows) for windows in per_document],
            [len(windows) for windows in per_document],
        )

    def document_raw(self, raw: np.ndarray, pooling: Pooling) -> np.ndarray:
        """One raw score per document from one per sequence."""
        return raw if all(count == 1 for count in self.chunks) else scoring.pool_chunks(raw, self.chunks, pooling)


class Task(ABC):
    kind: ModelKind
    uses_instruction = False

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    @abstractmethod
    def encode(self, query: str, documents: list[str], options: ScoreOptions) -> Encoded: ...

    @abstractmethod
    def raw(self, rows: np.ndarray) -> np.ndarray:
        """One raw score per document (logit, log-odds or cosine) from the backend's rows."""

    def finalize(self, raw: np.ndarray, raw_scores: bool) -> np.ndarray:
        """Relevance in 0..1 (the sigmoid of the raw score) unless raw scores are asked for."""
        return raw if raw_scores else scoring.sigmoid(raw)


class CrossEncoderTask(Task):
    kind = "cross-encoder"

    def encode(self, query: str, documents: list[str], options: ScoreOptions) -> Encoded:
        if options.chunking is not None:
            windows = self.encoder.encode_pair_chunks(
                query, documents, options.chunking, side=options.side, max_tokens_per_doc=options.max_tokens_per_doc
            )
            return Encoded.of(windows)
        sequences = self.encoder.encode_pairs(
            query,
            documents,
            truncate=options.truncate,
            side=options.side,
            max_tokens_per_doc=options.max_tokens_per_doc,
        )
        return Encoded.of([[s] for s in sequences])

    def raw(self, rows: np.ndarray) -> np.ndarray:
        return scoring.cross_encoder_raw(rows)


class BiEncoderTask(Task):
    """The query and each document embedded alone; the score is their cosine."""

    kind = "bi-encoder"

    def encode(self, query: str, documents: list[str], options: ScoreOptions) -> Encoded:
        encode = self.encoder.encode_texts
        [[query_seq]] = encode([query], truncate=options.truncate, side=options.side, is_query=True)
        windows = encode(documents, truncate=options.truncate, side=options.side, chunking=options.chunking)
        documents_only = Encoded.of(windows, extra_tokens=len(query_seq))
        return Encoded([query_seq, *documents_only.sequences], documents_only.tokens, documents_only.chunks)

    def raw(self, rows: np.ndarray) -> np.ndarray:
        return scoring.cosine(rows[0], rows[1:])

    def finalize(self, raw: np.ndarray, raw_scores: bool) -> np.ndarray:
        """``(cosine + 1) / 2``: Cohere-shaped clients (and their thresholds) expect 0..1."""
        return raw if raw_scores else np.asarray((raw + 1.0) / 2.0, dtype=np.float64)


class YesNoTask(Task):
    """LLM rerankers: a prompt template; the backend returns logit(yes) - logit(no) at the last position."""

    kind = "llm-yes-no"
    uses_instruction = True

    def __init__(self, encoder: Encoder, template: Template) -> None:
        super().__init__(encoder)
        self.template = template

    def encode(self, query: str, documents: list[str], options: ScoreOptions) -> Encoded:
        windows = self.encoder.encode_template(
            self.template,
            query,
            documents,
            options.instruction,
            truncate=options.truncate,
            side=options.side,
            max_tokens_per_doc=options.max_tokens_per_doc,
            chunking=options.chunking,
        )
        return Encoded.of(windows)

    def raw(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows[:, 0], dtype=np.float64)


def task_for(checkpoint: Checkpoint, encoder: Encoder) -> Task:
    if checkpoint.kind == "llm-yes-no":
        assert checkpoint.template is not None
        return YesNoTask(encoder, TEMPLATES[checkpoint.template])
    return CrossEncoderTask(encoder) if checkpoint.kind == "cross-encoder" else BiEncoderTask(encoder)
