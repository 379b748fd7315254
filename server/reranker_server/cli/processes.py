"""``API_PROCESSES`` > 1: this process supervises one engine process and N API processes.

- The engine process loads the model and serves its batcher, admission and score cache on a Unix
  socket; the API processes share the listener (bound here first, so a taken port fails at once)
  and reach the engine through that socket.
- Metrics: every process writes under one ``PROMETHEUS_MULTIPROC_DIR``; each API process's
  /metrics adds them up (``core.metrics``).
- SIGTERM/SIGINT: the API processes drain as one server does (``SHUTDOWN_DELAY``, then in-flight
  requests finish); the engine stops after the last of them.
- An API process that dies is started again; an engine that dies ends everything (its exit code:
  a model that can't load has already written its words to the termination log).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import types
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from prometheus_client import multiprocess

from reranker_server.core.metrics import MULTIPROCESS_DIR_ENV
from reranker_server.core.settings import Settings

logger = logging.getLogger("reranker_server")
_SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no forked threads or CUDA state
_POLL_SECONDS = 0.2
_RESTART_GAP_SECONDS = 1.0  # an API process that dies at once is not restarted in a tight loop
ENGINE_GONE = 3  # an API process's exit code when the engine failed, stopped or could not be reached
_ENGINE_EXIT_WAIT = 5.0  # after an ENGINE_GONE: how long the engine gets to exit before the API process is restarted


def _configure_logging(settings: Settings, role: str) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format=f"%(asctime)s %(levelname)s %(name)s [{role}]: %(message)s"
    )


def run_engine(settings: Settings, engine_socket: str) -> None:
    """The engine process's body."""
    import asyncio

    from reranker_contract.termination import MODEL_LOAD_FAILED
    from reranker_server.cli.serve import fail
    from reranker_server.serving.engine.host import serve_engine

    _configure_logging(settings, "engine")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: stop after the API processes
    error = asyncio.run(serve_engine(settings, engine_socket))
    if error is not None:
        raise fail(f"reranker-server: {MODEL_LOAD_FAILED}: {error}")


def run_api(settings: Settings, sock: socket.socket, engine_socket: str, index: int, first: bool) -> None:
    """An API process's body: the server's app in front of the engine. Only the first one answers
    while the model loads (/live, /health); the others, and any started again, take connections
    once they can serve them."""
    from reranker_server.api.app import create_app
    from reranker_server.cli.serve import serve_http

    _configure_logging(settings, f"api-{index}")
    app = create_app(settings, engine_socket=engine_socket, answer_while_loading=first)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn drained before re-raising it
        serve_http(app, settings, sock)
    sys.exit(ENGINE_GONE if app.state.runtime.phase == "failed" else 0)


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, workdir: str) -> None:
        self.settings = settings
        self.sock = sock
        self.engine_socket = os.path.join(workdir, "engine.sock")
        self.engine: BaseProcess | None = None
        self.apis: dict[int, BaseProcess] = {}
        self.stopping = False
        self.interrupted = False

    def start(self) -> None:
        self.engine = _SPAWN.Process(target=run_engine, args=(self.settings, self.engine_socket), name="engine")
        self.engine.start()
        for index in range(self.settings.api_processes):
            self._start_api(index, first=index == 0)

    def _start_api(self, index: int, first: bool = False) -> None:
        process = _SPAWN.Process(
            target=run_api, args=(self.settings, self.sock, self.engine_socket, index, first), name=f"api-{index}"
        )
        process.start()
        self.apis[index] = process

    def stop(self, sig: int, _: types.FrameType | None = None) -> None:
        """Drain: the API processes first (each as one server would), the engine after them."""
        self.interrupted = self.interrupted or sig == signal.SIGINT
        self.stopping = True
        for process in self.apis.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def watch(self) -> int:
        """Until everything stopped: the exit code."""
        assert self.engine is not None
        started: dict[int, float] = {}
        while True:
            wait([self.engine.sentinel, *(p.sentinel for p in self.apis.values())], timeout=_POLL_SECONDS)
            if self.engine.exitcode is not None:
                self._end_apis()
                code = self.engine.exitcode
                return code if code > 0 else (0 if self.stopping else 1)
            for index, process in list(self.apis.items()):
                if process.exitcode is None:
                    continue
                assert process.pid is not None
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                del self.apis[index]
                if self.stopping:
                    continue
                if process.exitcode == ENGINE_GONE:
                    self.engine.join(_ENGINE_EXIT_WAIT)
                    if self.engine.exitcode is not None:
                        continue  # the engine's exit ends the rest; one still running gets a new API process
                logger.warning("API process %d exited with %s; starting it again", index, process.exitcode)
                time.sleep(max(0.0, started.get(index, 0.0) + _RESTART_GAP_SECONDS - time.monotonic()))
                started[index] = time.monotonic()
                self._start_api(index)
            if self.stopping and not self.apis:
                self.engine.terminate()  # SIGTERM: the engine closes its socket and exits
                self.engine.join(10.0)
                return 130 if self.interrupted else 0

    def _end_apis(self) -> None:
        for process in self.apis.values():
            if process.is_alive():
                process.terminate()
        for process in self.apis.values():
            process.join(self.settings.shutdown_grace + 5.0)
            if process.is_alive():
                process.kill()


def supervise(settings: Settings, sock: socket.socket) -> int:
    workdir = tempfile.mkdtemp(prefix="reranker-server-")
    metrics_dir = os.path.join(workdir, "metrics")
    os.mkdir(metrics_dir)
    os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir  # the spawned processes read it at import
    supervisor = Supervisor(settings, sock, workdir)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    logging.getLogger(__name__).info("%d API processes in front of one engine process", settings.api_processes)
    try:
        supervisor.start()
        return supervisor.watch()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
