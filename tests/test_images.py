"""The container images really build and serve (opt-in: ``pytest --run-image tests/test_images.py``).

No registry is reachable, so the base is a Debian bookworm rootfs made with debootstrap and
imported into buildah; images build daemonless (vfs storage, chroot isolation, host network)
with the host's CA bundle mounted for pip and the local CPU torch wheel passed in.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parent.parent
BASE = "localhost/reranker-test-base:bookworm"
SUITE = "bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
WHEELS = Path("/opt/wheels")


def apt_mirror(suite: str = SUITE, sources: Path = Path("/etc/apt")) -> str | None:
    """The archive this machine's apt already uses for ``suite`` (one-line and deb822 formats),
    so the image test uses whatever mirror the machine is configured with and names none."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]
    for path in files:
        for line in path.read_text().splitlines() if path.is_file() else []:
            parts = [p for p in line.split() if not p.startswith("[")]  # drop [signed-by=...] options
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                return parts[1]
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0].strip()
    return None


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["buildah", "--storage-driver", "vfs", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install buildah debootstrap)")
    if buildah("inspect", "--type", "image", BASE, check=False).returncode == 0:
        return BASE
    mirror = apt_mirror()
    if mirror is None:
        pytest.skip(f"no apt source for Debian {SUITE} on this machine to debootstrap from")
    rootfs = tmp_path_factory.mktemp("rootfs")
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,python-is-python3,ca-certificates",
         SUITE, str(rootfs), mirror],
        check=True, capture_output=True,
    )  # fmt: skip
    container = buildah("from", "scratch").stdout.strip()
    buildah("copy", container, str(rootfs), "/")
    # Debian marks its Python externally managed; images install into it on purpose
    buildah("config", "--env", "PIP_BREAK_SYSTEM_PACKAGES=1", container)
    buildah("commit", container, BASE)
    buildah("rm", container)
    return BASE


def build(target: str, tag: str, base: str) -> None:
    wheel = sorted(WHEELS.glob("torch-2.13.0*cp311*.whl"))
    args = [
        "bud", "--isolation", "chroot", "--network", "host", "--layers=false",
        "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--build-arg", f"PYTHON_BASE={base}",
        "--target", target, "-t", tag,
    ]  # fmt: skip
    if wheel:  # the CPU build on this machine's disk, instead of a multi-gigabyte download
        args += ["-v", f"{WHEELS}:{WHEELS}:ro", "--build-arg", f"TORCH_SPEC={wheel[0]}"]
    buildah(*args, str(REPO))


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
