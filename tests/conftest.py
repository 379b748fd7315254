"""Shared fixtures: test checkpoints, loaded models, in-process apps and real server processes."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ServerProcess, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX graphs: shared by this run's tests (each exports a checkpoint once), never by later runs
_ONNX_CACHE = tempfile.mkdtemp(prefix="reranker-onnx-tests-")
atexit.register(shutil.rmtree, _ONNX_CACHE, ignore_errors=True)
os.environ.setdefault("ONNX_CACHE_DIR", _ONNX_CACHE)

REPO = Path(__file__).resolve().parent.parent
# helm and kubectl from scripts/install-tools.sh
_TOOLS = REPO / ".cache" / "tools" / "bin"
if _TOOLS.is_dir():
    os.environ["PATH"] = f"{_TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"


_KERNEL_CAPS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def pytest_report_header() -> str:
    """The kernels the exact-score tests run on (make test-kernels forces each family in turn)."""
    import torch

    forced = [f"{k}={os.environ[k]}" for k in _KERNEL_CAPS if k in os.environ]
    return f"torch {torch.__version__} CPU kernels: {torch.backends.cpu.get_cpu_capability()}" + (
        f" (forced: {' '.join(forced)})" if forced else ""
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.keywords and not config.getoption("--e2e"):
            item.add_marker(pytest.mark.skip(reason="the e2e suite is opt-in: pass --e2e (or run `make e2e`)"))
        if "image" in item.keywords and not config.getoption("--run-image"):
            item.add_marker(pytest.mark.skip(reason="image builds are opt-in: pass --run-image"))
        if "mlx" in item.keywords and not _importable("mlx.core"):
            item.add_marker(pytest.mark.skip(reason="mlx is not installed: pip install 'reranker-fleet[mlx]'"))
        if "helm" in item.keywords and shutil.which("helm") is None:
            item.add_marker(pytest.mark.skip(reason="no helm binary on PATH (make tools installs one)"))
        if "redis" in item.keywords and shutil.which("redis-server") is None:
            item.add_marker(pytest.mark.skip(reason="no redis-server on PATH (apt-get install redis-server)"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzz run's counts (tests/server/test_fuzz.py), so CI's log says how much was tried."""
    fuzz = sys.modules.get("tests.server.test_fuzz")
    counts = getattr(fuzz, "FUZZ_COUNTS", None)
    if counts:
        terminalreporter.write_sep("-", f"fuzz: {sum(counts.values())} requests, no server error")
        for operation, count in sorted(counts.items()):
            terminalreporter.write_line(f"{count:6d}  {operation}")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except Exception:
        return False
    return True


# --- checkpoints -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def minilm_cross_dir() -> Path:
    from tests.model_fixtures import minilm_cross_dir

    return minilm_cross_dir()


@pytest.fixture(scope="session")
def xlmr_cross_dir() -> Path:
    from tests.model_fixtures import xlmr_cross_dir

    return xlmr_cross_dir()


@pytest.fixture(scope="session")
def minilm_embed_dir() -> Path:
    from tests.model_fixtures import minilm_embed_dir

    return minilm_embed_dir()


# --- loaded models (shared: loading is the slow part) --------------------------------------


@pytest.fixture(scope="session")
def minilm_cross_model(minilm_cross_dir: Path):  # type: ignore[no-untyped-def]
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    return load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32"))


@pytest.fixture(scope="session")
def xlmr_cross_model(xlmr_cross_dir: Path):  # type: ignore[no-untyped-def]
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    return load_model(Settings(model_name=str(xlmr_cross_dir), dtype="float32"))


@pytest.fixture(scope="session")
def qwen3_reranker_dir() -> Path:
    from tests.model_fixtures import qwen3_reranker_dir

    return qwen3_reranker_dir()


@pytest.fixture(scope="session")
def qwen3_model(qwen3_reranker_dir: Path):  # type: ignore[no-untyped-def]
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    return load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32"))


@pytest.fixture(scope="session")
def embedded_model():  # type: ignore[no-untyped-def]
    from reranker_server.core.settings import Settings
    from reranker_server.loading.loader import load_model

    return load_model(Settings(dtype="float32"))


# --- real server processes ------------------------------------------------------------------


class _Accepts(BaseHTTPRequestHandler):
    """Answers every POST with 200 and ``{}``: what a load generator needs to count a request."""

    protocol_version = "HTTP/1.1"  # keeps connections, as the pipeline benchmark's clients expect

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        pass


class _AcceptingServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: 16 clients connecting at once overflowed it and two
    # requests of the soak's test got a reset (ReadError) in CI
    request_queue_size = 128


@pytest.fixture
def accepting_url() -> Iterator[str]:
    """A loopback HTTP endpoint that accepts every request: the load generators' own tests."""
    with _AcceptingServer(("127.0.0.1", 0), _Accepts) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str], *, wait: bool = True) -> ServerProcess:
        server = ServerProcess(env, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


# --- redis ------------------------------------------------------------------------------------


class RedisProcess:
    """A real redis-server on a loopback port, no persistence; can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH (apt-get install redis-server)")
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.kill()
