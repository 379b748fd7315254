"""In-process app helpers for server tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from reranker_server.api.app import create_app
from reranker_server.core.settings import Settings


@contextmanager
def app_client(model: Any, **settings: Any) -> Iterator[TestClient]:
    """A TestClient over a fresh app that adopts an already loaded model (lifespan runs)."""
    app = create_app(Settings(**settings), model=model)
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").json()
            time.sleep(0.02)
        yield client
