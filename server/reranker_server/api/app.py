"""App factory: routes, error rendering, request metrics, and a lifespan that owns the runtime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reranker_server import __version__
from reranker_server.api.auth import ApiKeys
from reranker_server.api.errors import ApiError
from reranker_server.api.routes import ops, rerank
from reranker_server.core import metrics
from reranker_server.core.settings import Settings
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.serving.runtime import Runtime

_KNOWN_PATHS = {"/v1/rerank", "/v2/rerank", "/rerank", "/health", "/ready", "/live", "/info", "/metrics"}


class RequestMetricsMiddleware:
    """Counts and times every request by endpoint and status; refuses oversized bodies early.

    A plain ASGI middleware (not BaseHTTPMiddleware) so client disconnects still reach the routes.
    """

    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _KNOWN_PATHS else "other"
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
                error = ApiError(413, f"request body is {int(declared)} bytes; at most {self.max_request_bytes}")
                await JSONResponse(error.body(), status_code=413)(scope, receive, send_with_status)
            else:
                await self.app(scope, receive, send_with_status)
        finally:
            if endpoint != "/metrics":
                metrics.REQUESTS.labels(endpoint=endpoint, status=str(status["code"])).inc()
                metrics.REQUEST_LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """404, 405 and the like, in the same shape as every other error."""
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found", 405: "method_not_allowed", 400: "validation"}
    field = "body" if exc.status_code == 400 else None  # the body could not be parsed (too deep, too big)
    error = ApiError(exc.status_code, str(exc.detail), field=field, error_type=kinds.get(exc.status_code, "http"))
    return JSONResponse(error.body(), status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # loc is ("body", <character offset>), not a field
        position = first.get("loc", ("body", "?"))[-1]
        context = first.get("ctx")
        reason = context.get("error", "invalid JSON") if isinstance(context, dict) else "invalid JSON"
        error = ApiError(422, f"body: invalid JSON at character {position}: {reason}", field="body")
        return JSONResponse(error.body(), status_code=422)
    field = _field_path(tuple(first.get("loc", ())))
    error = ApiError(422, f"{field}: {first.get('msg')}", field=field)
    body = error.body() | {
        "detail": [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    }
    return JSONResponse(body, status_code=422)


async def _register(settings: Settings, runtime: Runtime) -> Any:
    from reranker_contract.kubeconfig import api_client
    from reranker_server.api.registration import Registrar

    assert runtime.limiter is not None  # only the engine process has none, and it serves no HTTP
    client = api_client(timeout=10.0)
    registrar = Registrar(settings, client, capacity=settings.max_parallel_requests, fleet=runtime.limiter.fleet)
    await registrar.start()
    return registrar


def create_app(
    settings: Settings | None = None,
    model: LoadedModel | None = None,
    engine_socket: str | None = None,
    answer_while_loading: bool = True,
) -> FastAPI:
    """Build the app. ``model`` lets tests share one loaded model across apps; ``engine_socket``
    makes this an API process of the engine process listening there. Without
    ``answer_while_loading`` the app takes no connection before its model is ready (an API process
    joining others on one listener: connections go to those that can serve them)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime: Runtime = app.state.runtime
        runtime.start_loading(model)
        if not answer_while_loading:
            await runtime.settled.wait()
        registrar = await _register(settings, runtime) if settings.register_endpoint else None
        try:
            yield
        finally:
            if registrar is not None:
                await registrar.stop()
                await registrar.client.aclose()
            await runtime.close()

    app = FastAPI(
        title="reranker-server",
        version=__version__,
        description="Scores (query, document) pairs with cross-encoders. Cohere/Jina and TEI compatible.",
        lifespan=lifespan,
    )
    app.state.runtime = Runtime.for_api(settings, engine_socket) if engine_socket else Runtime.create(settings)
    app.state.api_keys = ApiKeys(settings.api_key, settings.api_key_file)
    app.include_router(rerank.router)
    app.include_router(ops.router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(RequestMetricsMiddleware, max_request_bytes=settings.max_request_bytes)
    return app
