"""graph_lock: one maker per graph and cache, and a killed try is not repeated.

A killed try is a lock file that still says who held it; the kernel's flock is gone with its
holder, so these tests leave one by writing that text with nobody holding the file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reranker_server.backends.onnx import graph_lock
from reranker_server.backends.onnx.graph_lock import EarlierTryKilled, making

KEY = "model-float32-0123456789abcdef"


def _lock_file(root: Path) -> Path:
    return root / f"{graph_lock.LOCK_PREFIX}{KEY}"


def test_the_maker_says_who_it_is_while_it_makes_and_leaves_nothing_after(tmp_path: Path) -> None:
    with making(tmp_path, KEY) as locked:
        assert locked and _lock_file(tmp_path).read_text().startswith(f"pid {os.getpid()} on ")
    assert list(tmp_path.iterdir()) == []


def test_a_try_that_failed_with_an_error_is_not_taken_for_a_killed_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="an exporter error"), making(tmp_path, KEY):
        raise ValueError("an exporter error")
    with making(tmp_path, KEY):  # tried again
        pass


def test_a_killed_try_is_not_repeated(tmp_path: Path) -> None:
    _lock_file(tmp_path).write_text("pid 1 on reranker-7d9f since 2026-11-27T10:00:00+0000\n")
    entered = False
    with pytest.raises(EarlierTryKilled) as raised, making(tmp_path, KEY):
        entered = True
    assert not entered
    said = str(raised.value)
    assert "(pid 1 on reranker-7d9f since 2026-11-27T10:00:00+0000) was killed before it finished" in said
    assert f"delete {_lock_file(tmp_path)} to try again" in said
    assert _lock_file(tmp_path).exists()  # says so again at the next start, until someone deletes it
    _lock_file(tmp_path).unlink()
    with making(tmp_path, KEY):
        pass


def test_a_second_maker_waits_for_the_first(tmp_path: Path) -> None:
    events: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with making(tmp_path, KEY):
            first_holds.set()
            time.sleep(0.3)
            events.append("first made it")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds.wait(10)
    with making(tmp_path, KEY):  # flock conflicts between two opens of the file, threads included
        events.append("second got the lock")
    thread.join()
    assert events == ["first made it", "second got the lock"]
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_without_locks_makes_the_graph_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(*_: Any) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING), making(tmp_path, KEY) as locked:
        assert not locked
    assert "making the graph without one" in caplog.text and list(tmp_path.iterdir()) == []


def test_a_maker_killed_with_sigkill_leaves_a_try_that_is_not_repeated(tmp_path: Path) -> None:
    """The real thing: the kernel drops the dead process's flock, its words stay in the file."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_WAIT, str(tmp_path), KEY], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    finally:
        holder.send_signal(signal.SIGKILL)  # as the OOM killer ends it
        holder.wait(10)
    killed = rf"\(pid {holder.pid} on .*\) was killed before it finished"
    with pytest.raises(EarlierTryKilled, match=killed), making(tmp_path, KEY):
        pass


_HOLD_AND_WAIT = """
import sys, time
from pathlib import Path
from reranker_server.backends.onnx.graph_lock import making
with making(Path(sys.argv[1]), sys.argv[2]):
    print("holding", flush=True)
    time.sleep(60)
"""
