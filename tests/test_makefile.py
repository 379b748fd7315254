"""The Makefile as a user meets it: `make run` stopped with Ctrl-C ends without make reporting an error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="no make binary")
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the suite runs outside a virtualenv: make run needs one")
def test_ctrl_c_on_make_run_is_a_clean_stop(minilm_cross_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    venv = Path(sys.prefix)
    log = tmp_path / "make-run.log"
    env = os.environ | {"MODEL_NAME": str(minilm_cross_dir), "DTYPE": "float32", "PORT": str(port)}
    with log.open("w") as out:
        # -o: the virtualenv counts as installed (this one runs the suite); a process group of its
        # own, so the SIGINT reaches make, its shell and the server together, as a terminal's Ctrl-C does
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"VENV={venv}", "-o", f"{venv}/.server"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not _ready(port):
                assert make.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            os.killpg(make.pid, signal.SIGINT)
            code = make.wait(timeout=60)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
    output = log.read_text()
    assert "Application shutdown complete" in output, output
    assert "make: ***" not in output, output
    # make passes the interrupt on (it ends by SIGINT itself: a shell shows 130), without an error line
    assert code in (0, 130, -signal.SIGINT), output


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
