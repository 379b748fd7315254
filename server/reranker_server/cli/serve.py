"""``reranker-server``: serve; every setting is a flag mirroring its environment variable."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from reranker_contract.termination import MODEL_LOAD_FAILED, TERMINATION_LOG
from reranker_server.api.app import create_app
from reranker_server.core.settings import Settings
from reranker_server.serving.runtime import Runtime

logger = logging.getLogger("reranker_server")
# Where Kubernetes reads a container's last words (the pod's terminationMessagePath); elsewhere absent
TERMINATION_LOG_ENV = "TERMINATION_MESSAGE_PATH"


def fail(message: str, code: int = 1) -> SystemExit:
    """The process's end with one line: on stderr, and in the termination log where one exists, so
    `kubectl describe pod` and the operator's Degraded condition show why the server stopped."""
    path = Path(os.environ.get(TERMINATION_LOG_ENV) or TERMINATION_LOG)
    if path.exists():
        with contextlib.suppress(OSError):  # read-only: FallbackToLogsOnError still takes the log's end
            path.write_text(message[:4096])  # the kubelet keeps 4096 bytes
    print(message, file=sys.stderr, flush=True)
    return SystemExit(code)


def _parse_bool(value: str) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _flag_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """argparse type and choices for a settings field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        choices = list(typing.get_args(annotation))
        return type(choices[0]), choices
    if annotation is bool:
        return _parse_bool, None
    return annotation, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranker-server",
        description="Serve a reranker over HTTP (Cohere/Jina /v1/rerank and /v2/rerank, TEI /rerank). "
        "Each flag overrides the environment variable named in its help. "
        "`reranker-server download MODEL` fills a model cache instead (see its --help).",
    )
    for field_name, field in Settings.model_fields.items():
        name = field.alias or field_name  # the flag, the variable and the keyword Settings takes
        flag_type, choices = _flag_type(field.annotation)
        # a bare boolean flag means true: `--register`; `--register false` still works
        bare = {"nargs": "?", "const": True} if flag_type is _parse_bool else {}
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=flag_type,
            choices=choices,
            default=argparse.SUPPRESS,
            help=f"{field.description} [env {name.upper()}; default {field.default!r}]",
            **bare,  # type: ignore[arg-type]
        )
    return parser


class DrainingServer(uvicorn.Server):
    """On SIGTERM: fail /ready and refuse new work at once, close the listener after
    SHUTDOWN_DELAY (so load balancers notice), then let in-flight requests finish."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, shutdown_delay: float) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._shutdown_delay = shutdown_delay
        self._draining = False
        self.interrupted = False  # Ctrl-C (SIGINT) asked for the shutdown

    def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
        self.interrupted = self.interrupted or sig == signal.SIGINT
        if self._draining or self._shutdown_delay <= 0:
            self._runtime.begin_draining()
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._runtime.begin_draining()
        logger.info("draining: closing the listener in %.1fs", self._shutdown_delay)
        import threading

        threading.Timer(self._shutdown_delay, super().handle_exit, (sig, frame)).start()

    def stop_now(self) -> None:
        """Shut down without draining (nothing was served: the model never loaded)."""
        self.should_exit = True


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, naming its variable and its flag."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = (Settings.model_fields[field].alias or field) if field in Settings.model_fields else field
        where = f"{name.upper()} (--{name.replace('_', '-')})" if name else "settings"
        given = f" (got {error['input']!r})" if name and not isinstance(error.get("input"), dict) else ""
        lines.append(f"{where}: {error['msg']}{given}")
    return lines


def listen(host: str, port: int) -> socket.socket:
    """Bind the listener before the model loads, so a taken port is said at once, plainly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"can't be used: {exc.strerror}"
        raise fail(f"reranker-server: {host}:{port} {reason} (set PORT / --port, HOST / --host)") from None
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["download"]:  # `reranker-server download MODEL`: fill a model cache, serve nothing
        from reranker_server.cli import download

        download.main(args[1:])
        return
    overrides = vars(build_parser().parse_args(args))
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise fail("\n".join(f"reranker-server: {line}" for line in settings_errors(exc)), code=2) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.max_retries is not None:
        logger.warning("MAX_RETRIES=%d is accepted and ignored: clients retry a 429/503 after its Retry-After",
                       settings.max_retries)  # fmt: skip
    sock = listen(settings.host, settings.port)
    if settings.api_processes > 1:
        from reranker_server.cli import processes

        raise SystemExit(processes.supervise(settings, sock))
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    try:
        server = serve_http(app, settings, sock)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn already shut down cleanly and re-raised it
        raise SystemExit(130) from None
    if server.interrupted:  # uvicorn's re-raise didn't reach us (seen once in CI: exit 0 after Ctrl-C)
        raise SystemExit(130)
    if runtime.phase == "failed":
        raise fail(f"reranker-server: {MODEL_LOAD_FAILED}: {runtime.error}")


def serve_http(app: FastAPI, settings: Settings, sock: socket.socket) -> DrainingServer:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT (drained) or a model that can't load."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        access_log=settings.access_log,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    runtime: Runtime = app.state.runtime
    server = DrainingServer(config, runtime, settings.shutdown_delay)
    runtime.on_failed = server.stop_now  # a model that can't load ends the process, not a zombie
    server.run(sockets=[sock])
    return server


if __name__ == "__main__":
    main()
