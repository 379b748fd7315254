"""An API process's connection to the engine process: calls by id, answers matched as they come.

A call cancelled here (the request timed out, its client left) is cancelled in the engine too.
If the engine goes away every waiting call fails with ``EngineLost`` and ``state`` says failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from reranker_server.core.problems import ModelUnavailable
from reranker_server.serving.engine.ipc import EngineState, frame, receive

logger = logging.getLogger(__name__)
_CONNECT_WAIT = 0.05


class EngineLost(ModelUnavailable):
    """A request the engine can no longer answer: 503, as a failed model is."""

    def __init__(self) -> None:
        super().__init__("the engine process stopped", loading=False)


class EngineClient:
    def __init__(self, path: str) -> None:
        self.path = path
        self.state = EngineState("loading")
        self.changed = asyncio.Event()  # set on each new state
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, wait_seconds: float) -> None:
        """Connect, waiting up to ``wait_seconds`` for the engine to open its socket."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                reader, self._writer = await asyncio.open_unix_connection(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_CONNECT_WAIT)
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader), name="engine-reader")

    def new_id(self) -> int:
        return next(self._ids)

    async def call(self, kind: str, *args: Any, request_id: int | None = None) -> Any:
        """The engine's answer; its exception raised here (a ``Problem`` as it was raised there)."""
        request_id = request_id or self.new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self.tell(kind, request_id, *args)
            return await future
        except asyncio.CancelledError:
            self.cancel(request_id)
            raise
        finally:
            self._waiting.pop(request_id, None)

    def cancel(self, request_id: int) -> None:
        with contextlib.suppress(EngineLost):
            self.tell("cancel", request_id)

    def tell(self, kind: str, request_id: int, *args: Any) -> None:
        if self._writer is None or self._writer.is_closing():
            raise EngineLost()
        self._writer.write(frame((kind, request_id, *args)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, request_id, *rest = await receive(reader)
                if kind == "state":
                    self.state = rest[0]
                    self.changed.set()
                    continue
                future = self._waiting.get(request_id)
                if future is None or future.done():
                    continue  # cancelled here meanwhile
                ok, value = rest
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self._lost()

    def _lost(self) -> None:
        logger.error("the engine process closed its connection")
        self.state = EngineState("failed", "the engine process stopped")
        self.changed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(EngineLost())
        if self._writer is not None:
            self._writer.close()

    async def state_after(self, phases: tuple[str, ...]) -> EngineState:
        """The engine's state once its phase is one of ``phases`` (or it failed)."""
        while self.state.phase not in (*phases, "failed"):
            self.changed.clear()
            await self.changed.wait()
        return self.state

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()
