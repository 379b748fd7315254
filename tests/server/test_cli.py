"""The server's command line as a new user meets it: bad settings, a taken port, a model that
can't load, Ctrl-C; each ends with one plain line and the usual exit code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reranker_server.api.routes.rerank import http_error
from reranker_server.core.problems import ModelUnavailable
from reranker_server.core.settings import Settings
from reranker_server.serving.runtime import Runtime
from tests.processes import ServerProcess, free_port


def run_server(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = os.environ | {"HOST": "127.0.0.1", "PORT": str(free_port()), "DTYPE": "float32"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "reranker_server", *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--batch-size", "-1"], {}, "BATCH_SIZE (--batch-size): Input should be greater than or equal to 1 (got -1)"),
        ([], {"BATCH_SIZE": "0"}, "BATCH_SIZE (--batch-size): Input should be greater than or equal to 1"),
        ([], {"MAX_QUEUE_SIZE": "lots"}, "MAX_QUEUE_SIZE (--max-queue-size): Input should be a valid integer"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(args: list[str], env: dict[str, str], expected: str) -> None:
    result = run_server(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("reranker-server: ") and expected in lines[0], lines[0]


def test_two_bad_settings_are_two_lines() -> None:
    result = run_server(env={"BATCH_SIZE": "0", "PORT": "0"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and {line.split(" (")[0] for line in lines} == {"reranker-server: PORT",
                                                                           "reranker-server: BATCH_SIZE"}  # fmt: skip


def test_a_taken_port_is_said_before_the_model_loads() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_server(env={"PORT": str(port)})
        took = time.monotonic() - started
    assert result.returncode == 1
    assert f"reranker-server: 127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr and "loaded" not in result.stderr
    print(f"refused in {took:.1f}s")


def test_the_seeds_max_retries_is_accepted_and_said_to_be_ignored() -> None:
    with socket.socket() as taken:  # the port is taken: the process ends right after reading its settings
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said, unset = run_server(env={"PORT": port, "MAX_RETRIES": "5"}), run_server(env={"PORT": port})
    assert "MAX_RETRIES=5 is accepted and ignored" in said.stderr
    assert "MAX_RETRIES" not in unset.stderr


@pytest.mark.slow
def test_a_model_that_cannot_load_ends_the_process(tmp_path: Path) -> None:
    termination_log = tmp_path / "termination-log"
    termination_log.touch()  # the kubelet makes it before the container starts
    result = run_server(
        env={"MODEL_NAME": "/nonexistent/model", "LOAD_RETRIES": "1", "LOAD_RETRY_SECONDS": "0.2",
             "TERMINATION_MESSAGE_PATH": str(termination_log)}
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("reranker-server: the model failed to load: CheckpointError:"), last
    assert "/nonexistent/model" in last
    assert "try 2 of 2" in result.stderr  # the retry policy ran before giving up
    assert termination_log.read_text() == last  # what the pod's lastState.terminated.message shows


def test_bad_settings_are_written_to_the_termination_log(tmp_path: Path) -> None:
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    result = run_server(env={"BATCH_SIZE": "zero", "TERMINATION_MESSAGE_PATH": str(termination_log)})
    assert result.returncode == 2
    assert termination_log.read_text().startswith("reranker-server: BATCH_SIZE (--batch-size):")


def test_no_termination_log_outside_a_pod(tmp_path: Path) -> None:
    absent = tmp_path / "termination-log"
    result = run_server(env={"BATCH_SIZE": "zero", "TERMINATION_MESSAGE_PATH": str(absent)})
    assert result.returncode == 2 and "BATCH_SIZE" in result.stderr
    assert not absent.exists()


def test_failed_is_never_reported_as_loading() -> None:
    runtime = Runtime.create(Settings())
    runtime.phase, runtime.error = "failed", "CheckpointError: no such model"
    with pytest.raises(ModelUnavailable) as refused:
        runtime.require_service()
    assert not refused.value.loading and "failed to load" in str(refused.value)
    answer = http_error(refused.value, "documents")
    assert answer.status == 503 and "failed to load" in answer.message
    assert answer.retry_after is None  # nothing to wait for: the bundled client must not retry


@pytest.mark.slow
def test_ctrl_c_exits_quietly_after_a_request_log_and_a_ready_line(minilm_cross_dir: Path, tmp_path: Path) -> None:
    server = ServerProcess({"MODEL_NAME": str(minilm_cross_dir)}, tmp_path / "server.log")
    try:
        server.wait_ready()
        assert httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200
        server.proc.send_signal(signal.SIGINT)
        code = server.proc.wait(timeout=30)
        log = server.log()
    finally:
        server.stop()
    assert code == 130, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert "ready: " in log
    assert '"POST /v1/rerank HTTP/1.1" 200' in log
