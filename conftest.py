"""Options shared by the test suites (tests/ and e2e/)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", help="run the end-to-end suite on a real cluster (see --cluster)")
    parser.addoption(
        "--cluster",
        choices=("kind", "local", "existing"),
        default="kind",
        help="e2e: a kind cluster made here (docker, kind); a one-node cluster started here from KUBE_BIN_DIR "
        "(local); or the current KUBECONFIG's (existing, with --image-load-command)",
    )
    parser.addoption(
        "--image-load-command",
        default=None,
        help="e2e --cluster=existing: run once per image, {archive} a docker-archive and {image} its name",
    )
    parser.addoption("--keep-cluster", action="store_true", help="e2e: leave the kind cluster up afterwards")
    parser.addoption("--run-image", action="store_true", help="build and run the container images with buildah")
