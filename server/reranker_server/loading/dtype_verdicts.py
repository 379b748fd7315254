"""DTYPE=auto's choice on a CPU, kept per machine: measured once for a model, a CPU and the library
versions, then read at every later start (a large model's candidates take minutes to time)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from reranker_server.backends.onnx.export import graph_key
from reranker_server.model.checkpoint import Checkpoint
from reranker_server.model.hardware import cpu_flags, cpu_quota

FOLDER = "dtype-verdicts"


def verdict_path(cache_dir: Path, checkpoint: Checkpoint, rule: dict[str, float]) -> Path:
    """The verdict's file: the checkpoint's weights and libraries (as its ONNX graphs are keyed), the
    CPU's flags and cores, and the rule that chose."""
    made_of = {"model": graph_key(checkpoint, "auto"), "cpu": sorted(cpu_flags()), "cores": cpu_quota(), "rule": rule}
    digest = hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / FOLDER / f"{digest}.json"


def read(path: Path) -> dict[str, Any] | None:
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and {"dtype", "engine", "note"} <= set(verdict) else None


def write(path: Path, verdict: dict[str, Any]) -> None:
    """Atomically, and never fatally: a read-only cache only means measuring again next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=".verdict-")
        with os.fdopen(handle, "w") as out:
            json.dump(verdict, out)
        os.replace(scratch, path)
