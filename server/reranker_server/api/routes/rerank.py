"""Rerank endpoints: HTTP only; limits, caching and batching live in ``serving``."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request

from reranker_server.api.auth import ApiKey, require_api_key
from reranker_server.api.errors import ApiError
from reranker_server.api.protocol import (
    LongDocuments,
    RerankRequest,
    RerankResponse,
    RerankResult,
    ResultDocument,
    TeiRank,
    TeiRerankRequest,
    Usage,
)
from reranker_server.core import problems
from reranker_server.model.encoding import Chunking
from reranker_server.serving.runtime import Runtime
from reranker_server.serving.service import ScoreOptions, ScoreResult

router = APIRouter(tags=["rerank"], dependencies=[Depends(require_api_key)])
T = TypeVar("T")
_DISCONNECT_POLL_SECONDS = 0.1


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client goes away first, cancel it so its queued pairs are dropped."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "client closed the request", error_type="cancelled")
    finally:
        if not task.done():
            task.cancel()


def http_error(problem: problems.Problem, documents_field: str) -> ApiError:
    """A domain problem as the HTTP answer, naming the request's own field."""

    def field(index: int | None) -> str:
        return "query" if index is None else f"{documents_field}[{index}]"

    match problem:
        case problems.EmptyQuery():
            return ApiError(422, str(problem), field="query")
        case problems.InvalidText(index=index):
            return ApiError(422, str(problem), field=field(index))
        case problems.TextTooLong(index=index) | problems.TooManyTokens(index=index):
            return ApiError(413, str(problem), field=field(index))
        case problems.TooManyDocuments():
            return ApiError(413, str(problem), field=documents_field)
        case problems.Overloaded():
            return ApiError(429, str(problem), error_type="overloaded", retry_after=1)
        case problems.Draining():
            return ApiError(503, str(problem), error_type="unavailable", retry_after=1)
        case problems.ModelUnavailable(loading=loading):
            return ApiError(503, str(problem), error_type="unavailable", retry_after=5 if loading else None)
    return ApiError(400, str(problem))


async def _within_rate_limits(request: Request, pairs: int) -> None:
    """429 naming the limit, with Retry-After, when the caller's key is over one of its limits."""
    runtime: Runtime = request.app.state.runtime
    if runtime.limiter is None:
        return
    key: ApiKey | None = getattr(request.state, "api_key", None)
    verdict = await runtime.limiter.admit(key.secret if key else None, key.limits if key else None, pairs)
    if verdict.allowed:
        return
    wait = max(1, math.ceil(verdict.retry_after))
    share = "" if verdict.fleet_wide else " (this server's share of the fleet's limit)"
    raise ApiError(
        429,
        f"rate limit {verdict.limit} exceeded: {verdict.rate:g}/s with a burst of {verdict.capacity:g}{share}; "
        f"retry after {wait}s",
        error_type="rate_limited",
        retry_after=wait,
        details={"limit": verdict.limit},
    )


async def _score(
    request: Request, query: str, documents: list[str], options: ScoreOptions, documents_field: str
) -> ScoreResult:
    runtime: Runtime = request.app.state.runtime

    async def admitted() -> ScoreResult:
        async with runtime.admission.slot():
            return await service.score(query, documents, options)

    try:
        service = runtime.require_service()
        service.check_limits(query, documents)
        await _within_rate_limits(request, len(documents))
        return await asyncio.wait_for(_until_disconnect(request, admitted()), timeout=runtime.settings.worker_timeout)
    except problems.Problem as problem:
        raise http_error(problem, documents_field) from problem
    except TimeoutError as exc:
        raise ApiError(
            504,
            f"scoring took longer than WORKER_TIMEOUT={runtime.settings.worker_timeout}s",
            error_type="timeout",
        ) from exc


def _long_documents(request: Request, body: LongDocuments) -> dict[str, Any]:
    """ScoreOptions' chunking and pooling: the request's, else the server's defaults."""
    settings = request.app.state.runtime.settings
    pooling = body.chunk_pooling or settings.chunk_pooling
    if (body.long_documents or settings.long_documents) != "chunk":
        return {"chunking": None, "pooling": pooling}
    overlap = settings.chunk_overlap if body.chunk_overlap is None else body.chunk_overlap
    windows = body.max_chunks_per_doc or settings.max_chunks_per_doc
    return {"chunking": Chunking(overlap, windows), "pooling": pooling}


def _chunks(result: ScoreResult, options: ScoreOptions, index: int) -> int | None:
    return result.chunks[index] if options.chunking is not None else None


def _ranked(scores: list[float], top_n: int | None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    return order[:top_n] if top_n is not None else order


async def _cohere(request: Request, body: RerankRequest, api_version: str) -> RerankResponse:
    runtime: Runtime = request.app.state.runtime
    texts = body.texts()
    options = ScoreOptions(
        max_tokens_per_doc=body.max_tokens_per_doc, instruction=body.instruction, **_long_documents(request, body)
    )
    result = await _score(request, body.query, texts, options, "documents")
    results = [
        RerankResult(
            index=i,
            relevance_score=result.scores[i],
            document=ResultDocument(text=texts[i]) if body.return_documents else None,
            chunks=_chunks(result, options, i),
        )
        for i in _ranked(result.scores, body.top_n)
    ]
    model = runtime.model
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=model.checkpoint.model_id if model else "",
        results=results,
        meta={
            "api_version": {"version": api_version},
            "billed_units": {"search_units": 1, "input_tokens": result.tokens},
            "tokens": {"input_tokens": result.tokens, "output_tokens": 0},
        },
        usage=Usage(total_tokens=result.tokens, prompt_tokens=result.tokens),
    )


@router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank_v1(request: Request, body: RerankRequest) -> RerankResponse:
    """Cohere v1 / Jina shape."""
    return await _cohere(request, body, "1")


@router.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank_v2(request: Request, body: RerankRequest) -> RerankResponse:
    """Cohere v2 shape."""
    return await _cohere(request, body, "2")


@router.post("/rerank", response_model=list[TeiRank], response_model_exclude_none=True)
async def rerank_tei(request: Request, body: TeiRerankRequest) -> list[TeiRank]:
    """Text Embeddings Inference shape."""
    options = ScoreOptions(
        raw_scores=body.raw_scores,
        truncate=body.truncate if body.truncate is not None else True,
        side=body.truncation_direction,
        instruction=body.instruction,
        **_long_documents(request, body),
    )
    result = await _score(request, body.query, body.texts, options, "texts")
    texts = body.texts if body.return_text else None
    return [
        TeiRank(index=i, score=result.scores[i], text=texts[i] if texts else None, chunks=_chunks(result, options, i))
        for i in _ranked(result.scores, None)
    ]
