"""Options shared by the test suites (tests/ and e2e/)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", help="run the kind end-to-end suite (needs docker, kind, helm)")
    parser.addoption("--keep-cluster", action="store_true", help="e2e: leave the kind cluster up afterwards")
    parser.addoption("--run-image", action="store_true", help="build and run the container images with buildah")
