"""Real processes and ports for tests and benchmarks, without the test session's side effects.

``tests/conftest.py`` sets the test session's environment when it is imported (HF_HUB_OFFLINE, a
temporary ONNX_CACHE_DIR, TOKENIZERS_PARALLELISM=false). The benchmarks imported ``free_port``
from it and so ran their servers under that environment: a graph cache that made every server
export the model again at start (torch loaded, ~270 MiB more RSS) and a tokenizer without its
thread pool. What both need lives here instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def free_port() -> int:
    """A port no socket holds on any address.

    Bound on the wildcard address: a port taken only on another interface (the emulator on the
    test host's veth address) is still free on 127.0.0.1, and the kernel handed that same number
    to a loopback probe once, so the operator's liveness endpoint (0.0.0.0) could not bind.
    """
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real ``reranker-server`` on a loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # float32 unless a test asks otherwise: DTYPE=auto picks bfloat16 on CPUs with native bf16
        # (AMX, avx512_bf16), and there a pair's score moves ~2e-4 with the batch it lands in, so
        # exact-score comparisons would pass on one CI machine and fail on the next.
        base = {"HOST": "127.0.0.1", "PORT": str(self.port), "LOG_LEVEL": "info", "DTYPE": "float32"}
        full_env = os.environ | base | env
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reranker_server"], env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def metric(server: ServerProcess, name: str) -> float:
    """One sample of the server's /metrics (one line even with API processes: added up, no pid)."""
    found = re.findall(rf"^{re.escape(name)} ([0-9.e+]+)$", httpx.get(f"{server.url}/metrics").text, re.MULTILINE)
    assert len(found) == 1, f"{name}: {found}"
    return float(found[0])


def leave_mid_request(server: ServerProcess, path: str, body: Mapping[str, object]) -> float:
    """Send a request, hang up 0.7 s later, wait until the batcher's queue is empty: the rows the
    model ran meanwhile (what was computed for nobody, had the queued pairs not been dropped)."""
    text = json.dumps(body)
    rows_before = metric(server, "reranker_batch_size_sum")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(text)}\r\n\r\n{text}".encode()
    )
    time.sleep(0.7)
    sock.close()
    deadline = time.monotonic() + 10
    while metric(server, "reranker_pending_sequences") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert metric(server, "reranker_pending_sequences") == 0
    return metric(server, "reranker_batch_size_sum") - rows_before


def stat_fields(path: str) -> list[str]:
    """``/proc/<pid>/stat`` (or a task's) after the command name: field 14 of proc(5) is index 11."""
    return Path(f"{path}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def spawned_processes(pid: int) -> list[int]:
    """The processes a server with API processes spawned, oldest first: the engine, then the API
    processes (multiprocessing's resource tracker, also a child, is started otherwise)."""
    spawned = [c for c in children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return sorted(spawned, key=lambda child: int(stat_fields(f"/proc/{child}")[19]))
