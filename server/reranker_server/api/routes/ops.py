"""Operations endpoints: /health (predecessor's shape), /ready, /live, /info, /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from reranker_server import __version__
from reranker_server.api.auth import check_key, require_api_key
from reranker_server.core import metrics
from reranker_server.serving.runtime import Runtime

router = APIRouter(tags=["operations"])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def model_summary(runtime: Runtime, cache_entries: int) -> dict[str, Any]:
    model = runtime.model
    summary: dict[str, Any] = {
        "backend": model.backend.name if model else None,
        "device": model.backend.device if model else None,
        "source": model.checkpoint.source if model else None,
        "dtype": model.backend.dtype if model else None,
        "name": model.checkpoint.model_id if model else runtime.settings.model_name,
        "revision": model.checkpoint.revision if model else runtime.settings.model_revision,
        "kind": model.checkpoint.kind if model else None,
        "template": model.checkpoint.template if model else None,
        "fallback_reason": model.fallback_reason if model else None,
        "cache_enabled": runtime.cache.enabled,
        "cache_size": cache_entries,
    }
    return summary


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Always 200 while the process serves HTTP; ``status`` says healthy, loading, draining or failed."""
    runtime = _runtime(request)
    status = {"ready": "healthy", "loading": "loading", "draining": "draining", "failed": "unhealthy"}[runtime.phase]
    counts = await runtime.counts()
    body: dict[str, Any] = {
        "status": status,
        "model": model_summary(runtime, counts.cache_entries),
        "requests": {"in_progress": counts.in_progress, "queued": counts.queued},
        "distributed": runtime.shared.describe(),
        "rate_limits": runtime.limiter.describe() if runtime.limiter else None,
    }
    if runtime.error:
        body["error"] = runtime.error
    return JSONResponse(body)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """200 once the model is loaded and warmed up; 503 while loading, draining or failed."""
    runtime = _runtime(request)
    body = {"ready": runtime.phase == "ready", "status": runtime.phase}
    return JSONResponse(body, status_code=200 if runtime.phase == "ready" else 503)


@router.get("/live")
async def live(request: Request) -> JSONResponse:
    """200 while the event loop answers; 503 only when the model failed to load (restart me)."""
    runtime = _runtime(request)
    failed = runtime.phase == "failed"
    return JSONResponse({"live": not failed, "error": runtime.error}, status_code=503 if failed else 200)


@router.get("/info", dependencies=[Depends(require_api_key)])
async def info(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    settings, model = runtime.settings, runtime.model
    return {
        "version": __version__,
        "model_id": model.checkpoint.model_id if model else settings.model_name,
        "model_revision": model.checkpoint.revision if model else settings.model_revision,
        "model_kind": model.checkpoint.kind if model else None,
        "template": model.checkpoint.template if model else None,
        "uses_instruction": model.task.uses_instruction if model else None,
        "max_input_length": model.checkpoint.max_length if model else None,
        "backend": model.backend.name if model else None,
        "device": model.backend.device if model else None,
        "dtype": model.backend.dtype if model else None,
        "dtype_reason": model.dtype_note if model else None,
        "fallback_reason": model.fallback_reason if model else None,
        "max_batch_size": settings.batch_size,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_parallel_requests": settings.max_parallel_requests,
        "max_queue_size": settings.max_queue_size,
        "max_documents_per_request": settings.max_documents_per_request,
        "max_text_chars": settings.max_text_chars,
        "worker_timeout": settings.worker_timeout,
        "cache_size": settings.cache_size,
        "phase": runtime.phase,
    }


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    if _runtime(request).settings.metrics_require_key:
        check_key(request)
    metrics.READY.set(1 if _runtime(request).phase == "ready" else 0)  # derived at scrape time
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
