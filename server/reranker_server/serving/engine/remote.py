"""The engine's admission, batcher and score cache as an API process sees them: the same faces
as the in-process ones (``Admission.slot``, ``SequenceRunner``, ``ScoreStore``), each a call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.core import metrics
from reranker_server.core.problems import Draining
from reranker_server.loading.loaded_model import LoadedModel
from reranker_server.model.encoding import Encoder, Sequence
from reranker_server.model.tasks import task_for
from reranker_server.serving.cache import CachedScore
from reranker_server.serving.engine.client import EngineClient
from reranker_server.serving.engine.ipc import EngineCounts, EngineState


class RemoteAdmission:
    """The engine's slots, shared by every API process; draining is said here at once."""

    def __init__(self, engine: EngineClient) -> None:
        self._engine = engine
        self.draining = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.draining:
            metrics.REJECTED.labels(reason="draining").inc()
            raise Draining()
        request_id = self._engine.new_id()
        await self._engine.call("admit", request_id=request_id)  # Overloaded/Draining raised as the engine's
        try:
            yield
        finally:
            self._engine.cancel(request_id)  # gives the slot back

    async def counts(self) -> EngineCounts:
        counts: EngineCounts = await self._engine.call("counts")
        return counts


class RemoteBatcher:
    """The engine's batcher: sequences from every API process share its forward passes."""

    def __init__(self, engine: EngineClient) -> None:
        self._engine = engine

    async def run(self, sequences: list[Sequence]) -> np.ndarray:
        rows: np.ndarray = await self._engine.call("run", sequences)
        return rows

    async def stop(self) -> None:
        """The engine stops its own."""


class RemoteScores:
    """The engine's LRU: one cache whichever API process a request lands on."""

    def __init__(self, engine: EngineClient) -> None:
        self._engine = engine

    @property
    def enabled(self) -> bool:
        return self._engine.state.cache_enabled

    async def lookup(self, keys: list[bytes]) -> list[CachedScore | None]:
        if not self.enabled:
            return [None] * len(keys)
        found: list[CachedScore | None] = await self._engine.call("lookup", keys)
        return found

    async def store(self, items: list[tuple[bytes, CachedScore]]) -> None:
        if self.enabled and items:
            self._engine.tell("store", 0, items)


class EngineBackend(Backend):
    """What runs the model in the engine process, for /info and /health; forward passes go
    through ``RemoteBatcher``."""

    def __init__(self, name: str, device: str, dtype: str) -> None:
        self.name, self.device, self.dtype = name, device, dtype

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        raise RuntimeError("the model runs in the engine process: use RemoteBatcher")


async def model_view(state: EngineState) -> LoadedModel:
    """The engine's model as an API process needs it: the tokenizer and task, the backend's name."""
    assert state.checkpoint is not None and state.backend is not None
    checkpoint = state.checkpoint
    encoder = await asyncio.to_thread(Encoder, checkpoint)
    task = task_for(checkpoint, encoder)
    return LoadedModel(
        checkpoint, encoder, EngineBackend(*state.backend), state.fallback_reason, state.dtype_note, task
    )
