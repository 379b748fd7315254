"""Scoring a query against documents: limits, cache, tokenization off the loop, batching."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from . import metrics, scoring
from .batcher import Batcher
from .cache import CachedScore, ScoreCache, score_key
from .encoding import InputTooLong, TruncationSide
from .errors import ApiError
from .model import LoadedModel
from .settings import Settings


@dataclass(frozen=True)
class ScoreOptions:
    raw_scores: bool = False
    truncate: bool = True
    side: TruncationSide = "right"
    max_tokens_per_doc: int | None = None

    def variant(self) -> str:
        """The part of the cache key that truncation changes (raw vs sigmoid is applied after)."""
        return f"{self.truncate}|{self.side}|{self.max_tokens_per_doc}"


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    tokens: int  # input tokens, cached pairs included


class RerankService:
    def __init__(self, settings: Settings, model: LoadedModel, batcher: Batcher, cache: ScoreCache) -> None:
        self.settings = settings
        self.model = model
        self.batcher = batcher
        self.cache = cache
        ckpt = model.checkpoint
        self._scope = f"{ckpt.model_id}|{ckpt.revision}|{ckpt.max_length}|{ckpt.kind}"

    def check_limits(self, query: str, documents: list[str], documents_field: str) -> None:
        settings = self.settings
        if not query.strip():
            raise ApiError(422, "must not be empty", field="query")
        if len(query) > settings.max_text_chars:
            raise ApiError(413, f"{len(query)} characters; at most {settings.max_text_chars}", field="query")
        if len(documents) > settings.max_documents_per_request:
            raise ApiError(
                413,
                f"{len(documents)} documents; at most {settings.max_documents_per_request} per request",
                field=documents_field,
            )
        for i, doc in enumerate(documents):
            if len(doc) > settings.max_text_chars:
                raise ApiError(
                    413,
                    f"{len(doc)} characters; at most {settings.max_text_chars}",
                    field=f"{documents_field}[{i}]",
                )

    async def score(
        self, query: str, documents: list[str], options: ScoreOptions, documents_field: str = "documents"
    ) -> ScoreResult:
        metrics.PAIRS_SCORED.inc(len(documents))
        if not documents:
            return ScoreResult([], 0)
        keys = [score_key(self._scope, options.variant(), query, doc) for doc in documents]
        cached = self.cache.get_many(keys)
        missing = [i for i, hit in enumerate(cached) if hit is None]
        computed: dict[int, CachedScore] = {}
        if missing:
            try:
                raw, tokens = await self._compute(query, [documents[i] for i in missing], options)
            except InputTooLong as exc:
                field = "query" if exc.index is None else f"{documents_field}[{missing[exc.index]}]"
                raise ApiError(413, str(exc), field=field) from exc
            computed = {i: CachedScore(float(r), t) for i, r, t in zip(missing, raw, tokens, strict=True)}
            self.cache.put_many([(keys[i], value) for i, value in computed.items()])
        entries = [hit if hit is not None else computed[i] for i, hit in enumerate(cached)]
        raw_all = np.array([e.raw for e in entries], dtype=np.float64)
        final = scoring.finalize(self.model.checkpoint.kind, raw_all, options.raw_scores)
        return ScoreResult([float(s) for s in final], sum(e.tokens for e in entries))

    async def _compute(self, query: str, documents: list[str], options: ScoreOptions) -> tuple[np.ndarray, list[int]]:
        encoder = self.model.encoder
        if self.model.checkpoint.kind == "cross-encoder":
            sequences = await asyncio.to_thread(
                encoder.encode_pairs,
                query,
                documents,
                truncate=options.truncate,
                side=options.side,
                max_tokens_per_doc=options.max_tokens_per_doc,
            )
            rows = await self.batcher.run(sequences)
            return scoring.cross_encoder_raw(rows), [len(s) for s in sequences]
        query_seq = await asyncio.to_thread(
            encoder.encode_texts, [query], truncate=options.truncate, side=options.side, is_query=True
        )
        doc_seqs = await asyncio.to_thread(
            encoder.encode_texts, documents, truncate=options.truncate, side=options.side
        )
        rows = await self.batcher.run(query_seq + doc_seqs)
        return scoring.cosine(rows[0], rows[1:]), [len(query_seq[0]) + len(s) for s in doc_seqs]
