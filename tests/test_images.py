"""The container images really build and serve (opt-in: ``pytest --run-image tests/test_images.py``).

How they build here (debootstrapped base, buildah, no registry): ``tests/images.py``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.images import buildah
from tests.processes import free_port

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def base_image() -> str:
    try:
        return images.base_image()
    except images.ImagesUnavailable as missing:
        pytest.skip(str(missing))


def build(target: str, tag: str, base: str) -> None:
    images.build(target, tag, base)


@pytest.fixture(scope="module")
def server_image(base_image: str) -> str:
    build("server", "localhost/reranker-server:test", base_image)
    return "localhost/reranker-server:test"


@pytest.fixture(scope="module")
def operator_image(base_image: str) -> str:
    build("operator", "localhost/reranker-operator:test", base_image)
    return "localhost/reranker-operator:test"


@pytest.fixture
def container(request: pytest.FixtureRequest) -> Iterator[str]:
    image = request.getfixturevalue(request.param)
    name = buildah("from", image).stdout.strip()
    yield name
    buildah("rm", name, check=False)


@pytest.mark.parametrize("container", ["server_image"], indirect=True)
def test_server_image_serves_the_embedded_model(container: str, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        ["buildah", "--storage-driver", "vfs", "run", "--isolation", "chroot", "--network", "host",
         "--env", f"PORT={port}", "--env", "HOST=127.0.0.1", container, "--", "reranker-server"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(1)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/rerank",
            json={"query": "capital of France", "documents": ["Cats purr.", "Paris is the capital of France."]},
            timeout=60,
        )
        assert response.status_code == 200
        body = response.json()
        print("image /v1/rerank:", body)
        assert body["results"][0]["index"] == 1
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        print("image /health:", health)
        assert health["model"]["source"].startswith("embedded:")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("container", ["operator_image"], indirect=True)
def test_operator_image_runs_its_console_script(container: str) -> None:
    result = buildah("run", "--isolation", "chroot", container, "--", "reranker-operator", "--help")
    print("image reranker-operator --help:", result.stdout)
    assert "Reconcile Reranker resources" in result.stdout
    torch = buildah("run", "--isolation", "chroot", container, "--", "python", "-c", "import torch", check=False)
    assert torch.returncode != 0  # the operator image is slim
