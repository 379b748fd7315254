"""Scoring a query against documents: limits, cache, tokenization off the loop, batching."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np

from reranker_server.core import metrics
from reranker_server.core.problems import (
    EmptyQuery,
    InvalidText,
    TextTooLong,
    TooManyDocuments,
    TooManyTokens,
    first_lone_surrogate,
)
from reranker_server.core.settings import Settings
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.model.tasks import Encoded, ScoreOptions
from reranker_server.serving.batcher import SequenceRunner
from reranker_server.serving.cache import CachedScore, ScoreStore, score_key
from reranker_server.serving.distributed import NoSharedCache, SharedCache

__all__ = ["RerankService", "ScoreOptions", "ScoreResult"]


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    tokens: int  # input tokens, cached pairs included
    chunks: list[int]  # windows each document was scored in (1 unless long documents are chunked)


class RerankService:
    def __init__(
        self,
        settings: Settings,
        model: LoadedModel,
        batcher: SequenceRunner,
        cache: ScoreStore,
        shared: SharedCache | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.batcher = batcher
        self.cache = cache
        self.shared: SharedCache = shared or NoSharedCache()
        ckpt = model.checkpoint
        self._scope = f"{ckpt.model_id}|{ckpt.revision}|{ckpt.max_length}|{ckpt.kind}|{ckpt.template}"

    def check_limits(self, query: str, documents: list[str]) -> None:
        """Refuse what can't be scored (``problems``), before any work is queued."""
        settings = self.settings
        if not query.strip():
            raise EmptyQuery()
        if len(documents) > settings.max_documents_per_request:
            raise TooManyDocuments(len(documents), settings.max_documents_per_request)
        for index, text in ((None, query), *enumerate(documents)):
            if len(text) > settings.max_text_chars:
                raise TextTooLong(index, len(text), settings.max_text_chars)
            position = first_lone_surrogate(text)
            if position is not None:  # it could be neither hashed for the cache nor tokenized
                raise InvalidText(index, position)

    async def score(self, query: str, documents: list[str], options: ScoreOptions) -> ScoreResult:
        metrics.PAIRS_SCORED.inc(len(documents))
        if not documents:
            return ScoreResult([], 0, [])
        variant = options.variant(self.model.task.uses_instruction)
        keys = [score_key(self._scope, variant, query, doc) for doc in documents]
        found: dict[int, CachedScore] = {
            i: hit for i, hit in enumerate(await self.cache.lookup(keys)) if hit is not None
        }
        missing = [i for i in range(len(documents)) if i not in found]
        if missing:  # the fleet's cache, one round trip
            shared = await self.shared.get_many([keys[i] for i in missing])
            from_fleet = {i: hit for i, hit in zip(missing, shared, strict=True) if hit is not None}
            await self.cache.store([(keys[i], hit) for i, hit in from_fleet.items()])
            found |= from_fleet
            missing = [i for i in missing if i not in from_fleet]
        if missing:
            found |= await self._compute_missing(query, documents, keys, missing, options)
        entries = [found[i] for i in range(len(documents))]
        raw_all = np.array([e.raw for e in entries], dtype=np.float64)
        final = self.model.task.finalize(raw_all, options.raw_scores)
        return ScoreResult([float(s) for s in final], sum(e.tokens for e in entries), [e.chunks for e in entries])

    async def _compute_missing(
        self,
        query: str,
        documents: list[str],
        keys: list[bytes],
        missing: list[int],
        options: ScoreOptions,
    ) -> dict[int, CachedScore]:
        """Compute what no cache had. Pairs another replica is already computing are computed
        here too, but dropped as soon as its scores land in the shared cache."""
        claims = await self.shared.claim([keys[i] for i in missing])
        mine = [i for i, claimed in zip(missing, claims, strict=True) if claimed]
        theirs = [i for i, claimed in zip(missing, claims, strict=True) if not claimed]
        ours, (raced_here, from_fleet) = await asyncio.gather(
            self._compute_indices(query, documents, mine, options),
            self._race_fleet(query, documents, keys, theirs, options),
        )
        computed_here = ours | raced_here
        everything = computed_here | from_fleet
        await self.cache.store([(keys[i], value) for i, value in everything.items()])
        await self.shared.put_many([(keys[i], v) for i, v in computed_here.items()], [keys[i] for i in mine])
        return everything

    async def _race_fleet(
        self,
        query: str,
        documents: list[str],
        keys: list[bytes],
        indices: list[int],
        options: ScoreOptions,
    ) -> tuple[dict[int, CachedScore], dict[int, CachedScore]]:
        """(computed here, taken from the fleet): whichever finishes first wins, the other is cancelled."""
        if not indices:
            return {}, {}
        local = asyncio.ensure_future(self._compute_indices(query, documents, indices, options))
        fleet = asyncio.ensure_future(self.shared.wait_for([keys[i] for i in indices]))
        try:
            done, _ = await asyncio.wait({local, fleet}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the request itself gave up
            local.cancel()
            fleet.cancel()
            raise
        if fleet in done and fleet.exception() is None:
            local.cancel()  # its queued pairs are dropped by the batcher
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await local
            return {}, dict(zip(indices, fleet.result(), strict=True))
        fleet.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fleet
        return await local, {}

    async def _compute_indices(
        self, query: str, documents: list[str], indices: list[int], options: ScoreOptions
    ) -> dict[int, CachedScore]:
        if not indices:
            return {}
        try:
            raw, encoded = await self._compute(query, [documents[i] for i in indices], options)
        except TooManyTokens as exc:  # its index counts this call's documents: make it the request's
            index = None if exc.index is None else indices[exc.index]
            raise TooManyTokens(index, exc.tokens, exc.limit) from exc
        scored = zip(indices, raw, encoded.tokens, encoded.chunks, strict=True)
        return {i: CachedScore(float(r), t, c) for i, r, t, c in scored}

    async def _compute(self, query: str, documents: list[str], options: ScoreOptions) -> tuple[np.ndarray, Encoded]:
        """One raw score per document (a long one's windows pooled), and what was encoded."""
        task = self.model.task
        encoded = await asyncio.to_thread(task.encode, query, documents, options)  # off the event loop
        rows = await self.batcher.run(encoded.sequences)  # windows share batches with every other pair
        return encoded.document_raw(task.raw(rows), options.pooling), encoded
