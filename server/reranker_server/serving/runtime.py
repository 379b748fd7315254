"""The long-lived objects of one server process, kept on ``app.state.runtime``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from reranker_contract.termination import MODEL_LOAD_FAILED
from reranker_server.core import metrics
from reranker_server.core.problems import ModelUnavailable
from reranker_server.core.settings import Settings
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.loading.loader import load_model
from reranker_server.serving.admission import Admission
from reranker_server.serving.batcher import Batcher
from reranker_server.serving.cache import ScoreCache
from reranker_server.serving.distributed import NoSharedCache, RedisSharedCache, SharedCache
from reranker_server.serving.engine.client import EngineClient
from reranker_server.serving.engine.ipc import EngineCounts
from reranker_server.serving.engine.remote import RemoteAdmission, RemoteBatcher, RemoteScores, model_view
from reranker_server.serving.fleet_size import FleetSize
from reranker_server.serving.rate_limiter import RateLimiter
from reranker_server.serving.rate_limits import Limits
from reranker_server.serving.service import RerankService

logger = logging.getLogger(__name__)

Phase = Literal["loading", "ready", "failed", "draining"]


class EngineFailed(RuntimeError):
    """The engine process could not load the model; its own words."""


def shared_cache(settings: Settings) -> SharedCache:
    if not settings.enable_distributed or not settings.redis_url:
        return NoSharedCache()
    # scores are shared per model and revision; the scope inside each key adds max length and kind
    namespace = f"{settings.model_name or 'embedded'}@{settings.model_revision or 'main'}"
    return RedisSharedCache(
        settings.redis_url,
        namespace=namespace,
        ttl_seconds=settings.redis_ttl_seconds,
        timeout=settings.redis_timeout,
        retry_seconds=settings.redis_retry_seconds,
        inflight_seconds=min(settings.worker_timeout, 30.0),
    )


def rate_limiter(settings: Settings, processes: int = 1) -> RateLimiter:
    defaults = Limits(
        requests_per_second=settings.rate_limit_requests_per_second,
        pairs_per_second=settings.rate_limit_pairs_per_second,
        request_burst=settings.rate_limit_request_burst,
        pair_burst=settings.rate_limit_pair_burst,
    )
    registered = f"{settings.namespace}/{settings.reranker}" if settings.register_endpoint else None
    return RateLimiter(
        defaults,
        FleetSize(settings.fleet_size, settings.fleet_size_file),
        scope=settings.rate_limit_scope or registered or "default",
        processes=processes,
        redis_url=settings.redis_url,
        timeout=settings.redis_timeout,
        retry_seconds=settings.redis_retry_seconds,
    )


@dataclass
class Runtime:
    """One process's serving parts. Three roles: the whole server in one process (``create``);
    the engine process behind API processes (``for_engine``: model, batcher, admission, cache);
    an API process (``for_api``: the engine's parts reached over its socket, its own rate limits
    and shared cache)."""

    settings: Settings
    admission: Admission | RemoteAdmission
    cache: ScoreCache | RemoteScores
    limiter: RateLimiter | None
    phase: Phase = "loading"
    error: str | None = None
    shared: SharedCache = field(default_factory=NoSharedCache)
    model: LoadedModel | None = None
    service: RerankService | None = None
    batcher: Batcher | RemoteBatcher | None = None
    engine: EngineClient | None = None  # an API process's link to the engine process
    on_failed: Callable[[], None] | None = None  # told when the model can't load (the CLI exits)
    on_phase: Callable[[], None] | None = None  # told when the phase changes (the engine tells API processes)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # set once loaded, or failed
    _loader: asyncio.Task[None] | None = field(default=None, repr=False)
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            admission=Admission(settings.max_parallel_requests, settings.max_queue_size),
            cache=ScoreCache(settings.cache_size),
            limiter=rate_limiter(settings),
            shared=shared_cache(settings),
        )

    @classmethod
    def for_engine(cls, settings: Settings) -> Runtime:
        admission = Admission(settings.max_parallel_requests, settings.max_queue_size)
        return cls(settings=settings, admission=admission, cache=ScoreCache(settings.cache_size), limiter=None)

    @classmethod
    def for_api(cls, settings: Settings, engine_socket: str) -> Runtime:
        engine = EngineClient(engine_socket)
        return cls(
            settings=settings,
            admission=RemoteAdmission(engine),
            cache=RemoteScores(engine),
            limiter=rate_limiter(settings, processes=settings.api_processes),  # each enforces its share
            shared=shared_cache(settings),
            engine=engine,
        )

    def start_loading(self, model: LoadedModel | None = None) -> None:
        """Load (or adopt) the model in the background so /live answers while it loads."""
        self._loader = asyncio.get_running_loop().create_task(self._load(model), name="model-loader")

    async def _load_with_retries(self, preloaded: LoadedModel | None) -> LoadedModel:
        """Load and warm up; LOAD_RETRIES more tries (a hub that hiccups), doubling the wait each time."""
        wait = self.settings.load_retry_seconds
        for attempt in range(self.settings.load_retries + 1):
            try:
                model = preloaded if preloaded is not None else await asyncio.to_thread(load_model, self.settings)
                await asyncio.to_thread(model.score_sync, "warm-up query", ["a short document", "another " * 64])
                return model
            except Exception as exc:
                if attempt == self.settings.load_retries:
                    raise
                logger.warning("model failed to load (%s: %s); try %d of %d in %.0fs", type(exc).__name__, exc,
                               attempt + 2, self.settings.load_retries + 1, wait)  # fmt: skip
                await asyncio.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")

    async def _attach(self, engine: EngineClient) -> LoadedModel:
        """An API process: the engine's model once it is ready (the engine loads and retries)."""
        await engine.connect(wait_seconds=60.0)
        state = await engine.state_after(("ready", "draining"))
        if state.phase != "ready" or state.checkpoint is None:
            raise EngineFailed(state.error or "the engine failed")
        return await model_view(state)

    async def _watch_engine(self, engine: EngineClient) -> None:
        """An engine that stops takes its API processes down with it: they can serve nothing."""
        state = await engine.state_after(())
        logger.error("the engine process stopped: this API process stops too")
        self._failed(state.error or "the engine process stopped", logged=True)

    def _failed(self, error: str, logged: bool = False) -> None:
        self.phase, self.error = "failed", error
        if not logged:
            logger.error("%s: %s", MODEL_LOAD_FAILED, self.error)  # one line; the traceback at debug
            logger.debug("model load traceback", exc_info=True)
        self._phase_changed()
        if self.on_failed is not None:
            self.on_failed()

    def _phase_changed(self) -> None:
        if self.phase != "loading":
            self.settled.set()
        if self.on_phase is not None:
            self.on_phase()

    async def _load(self, preloaded: LoadedModel | None) -> None:
        try:
            model = await (self._attach(self.engine) if self.engine else self._load_with_retries(preloaded))
        except EngineFailed as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        self.model = model
        if self.engine is not None:
            self.batcher = RemoteBatcher(self.engine)
            self._watcher = asyncio.get_running_loop().create_task(self._watch_engine(self.engine), name="engine-watch")
        else:
            self.batcher = Batcher(
                model.backend, model.encoder.pad_id, self.settings.batch_size, self.settings.max_batch_tokens
            )
            self.batcher.start()
        self.service = RerankService(self.settings, model, self.batcher, self.cache, self.shared)
        backend, ckpt = model.backend, model.checkpoint
        metrics.MODEL_INFO.labels(
            model=ckpt.model_id,
            revision=ckpt.revision or "",
            kind=ckpt.kind,
            backend=backend.name,
            device=backend.device,
            dtype=backend.dtype,
        ).set(1)
        if self.phase == "loading":
            self.phase = "ready"
            logger.info("ready: %s (%s) on %s/%s, dtype %s", ckpt.model_id, ckpt.kind, backend.name, backend.device,
                        backend.dtype)  # fmt: skip
            self._phase_changed()

    def begin_draining(self) -> None:
        self.phase = "draining"
        self.admission.draining = True
        self._phase_changed()

    async def counts(self) -> EngineCounts:
        """Requests in progress and queued, and cached scores: this process's, or the engine's."""
        if isinstance(self.admission, RemoteAdmission):
            return await self.admission.counts() if self.model is not None else EngineCounts(0, 0, 0)
        assert isinstance(self.cache, ScoreCache)
        return EngineCounts(self.admission.in_progress, self.admission.waiting, len(self.cache))

    def require_service(self) -> RerankService:
        if self.phase == "failed":  # first: a failed load must never read as "still loading"
            raise ModelUnavailable(f"{MODEL_LOAD_FAILED}: {self.error}", loading=False)
        if self.service is None or self.phase == "loading":
            raise ModelUnavailable("the model is still loading", loading=True)
        return self.service

    async def close(self) -> None:
        for task in (self._loader, self._watcher):
            if task and not task.done():
                task.cancel()
        if self.batcher:
            await self.batcher.stop()
        await self.shared.close()
        if self.limiter is not None:
            await self.limiter.close()
        if self.engine is not None:
            await self.engine.close()
