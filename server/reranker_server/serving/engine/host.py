"""The engine process's side: one runtime (model, batcher, admission, score cache) serving every
API process over a Unix socket.

Each request carries an id; its work runs as a task the API process can cancel by that id (a
client gone, a timeout), which drops its queued sequences or gives back its admission slot. An
API process that goes away has all its tasks cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from reranker_server.core.problems import ModelUnavailable, Problem
from reranker_server.core.settings import Settings
from reranker_server.model.encoding import Sequence
from reranker_server.serving.cache import ScoreCache
from reranker_server.serving.engine.ipc import EngineCounts, EngineState, frame, receive
from reranker_server.serving.runtime import Runtime

logger = logging.getLogger(__name__)


def engine_state(runtime: Runtime) -> EngineState:
    model = runtime.model
    if model is None:
        return EngineState(runtime.phase, runtime.error, cache_enabled=runtime.cache.enabled)
    backend = model.backend
    return EngineState(
        runtime.phase,
        runtime.error,
        model.checkpoint,
        (backend.name, backend.device, backend.dtype),
        model.dtype_note,
        model.fallback_reason,
        runtime.cache.enabled,
    )


class _Connection:
    """One API process: its requests' tasks by id."""

    def __init__(self, runtime: Runtime, writer: asyncio.StreamWriter) -> None:
        assert isinstance(runtime.cache, ScoreCache)  # the engine's own (Runtime.for_engine)
        self._runtime = runtime
        self._cache = runtime.cache
        self._writer = writer
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "admit": self._admit,
            "run": self._run,
            "lookup": self._lookup,
            "counts": self._counts,
        }

    def send(self, message: tuple[Any, ...]) -> None:
        if not self._writer.is_closing():
            self._writer.write(frame(message))

    def handle(self, message: tuple[Any, ...]) -> None:
        kind, request_id, *args = message
        if kind == "cancel":
            task = self._tasks.pop(request_id, None)
            if task is not None:
                task.cancel()
            return
        if kind == "store":
            self._cache.put_many(args[0])
            return
        work = self._handlers[kind](request_id, *args)
        task = asyncio.get_running_loop().create_task(self._answer(request_id, work))
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request_id, None))

    async def _answer(self, request_id: int, work: Awaitable[Any]) -> None:
        try:
            result = await work
        except Problem as problem:
            self.send(("reply", request_id, False, problem))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API process raises it as its own (a failed forward pass)
            logger.debug("request %d failed", request_id, exc_info=True)
            self.send(("reply", request_id, False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        else:
            self.send(("reply", request_id, True, result))

    async def _admit(self, request_id: int) -> None:
        """Answers once admitted, then holds the slot until the API process cancels this."""
        async with self._runtime.admission.slot():
            self.send(("reply", request_id, True, None))
            await asyncio.Event().wait()

    async def _run(self, _: int, sequences: list[Sequence]) -> Any:
        batcher = self._runtime.batcher
        if batcher is None:
            raise ModelUnavailable("the model is still loading", loading=True)
        return await batcher.run(sequences)

    async def _lookup(self, _: int, keys: list[bytes]) -> Any:
        return self._cache.get_many(keys)

    async def _counts(self, _: int) -> EngineCounts:
        return await self._runtime.counts()

    async def flush(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        self._writer.close()


class EngineHost:
    def __init__(self, runtime: Runtime, path: str) -> None:
        self.runtime = runtime
        self.path = path
        self._connections: set[_Connection] = set()
        self._readers: set[asyncio.Future[Any]] = set()  # awaited at close: never left to be cancelled
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    def publish_state(self) -> None:
        """Tell every API process the engine's phase (loaded, failed, draining)."""
        state = engine_state(self.runtime)
        for connection in self._connections:
            connection.send(("state", 0, state))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self.runtime, writer)
        self._connections.add(connection)
        reading = asyncio.current_task()
        assert reading is not None  # the server runs each connection as a task
        self._readers.add(reading)
        connection.send(("state", 0, engine_state(self.runtime)))
        try:
            while True:
                connection.handle(await receive(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the API process stopped: its requests go with it
        finally:
            self._connections.discard(connection)
            self._readers.discard(reading)
            connection.close()

    async def until_alone(self, longest: float) -> None:
        """Until no API process is connected, or ``longest`` seconds."""
        if self._readers:
            await asyncio.wait(set(self._readers), timeout=longest)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            await connection.flush()
            connection.close()
        await asyncio.gather(*self._readers, return_exceptions=True)  # each sees its closed socket
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


async def serve_engine(settings: Settings, path: str) -> str | None:
    """The engine process: load the model, serve API processes until SIGTERM. The load's error
    when the model can't be loaded (after the API processes were told)."""
    runtime = Runtime.for_engine(settings)
    host = EngineHost(runtime, path)
    stopped = asyncio.Event()
    runtime.on_phase = host.publish_state
    runtime.on_failed = stopped.set
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await host.start()
    runtime.start_loading()
    await stopped.wait()
    if runtime.phase == "ready":
        runtime.begin_draining()  # refuse new work; API processes still connected hear it
        # a SIGTERM sent to every process (systemd, `kill` of the group) must not cut their in-flight requests
        await host.until_alone(settings.shutdown_delay + settings.shutdown_grace + 5.0)
    await host.close()
    await runtime.close()
    return runtime.error if runtime.error and runtime.model is None else None
