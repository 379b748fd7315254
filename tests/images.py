"""Container images built daemonless with buildah, for the image tests and the e2e suite.

No registry is reachable, so the base is a Debian bookworm rootfs made with debootstrap and
imported into buildah; images build with vfs storage, chroot isolation and the host's network,
with the host's CA bundle mounted for pip and the local CPU torch wheel passed in.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE = "localhost/reranker-test-base:bookworm"
SUITE = "bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
WHEELS = Path("/opt/wheels")


class ImagesUnavailable(Exception):
    """What this machine lacks to build images (the tests skip with it)."""


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


def exists(image: str) -> bool:
    return buildah("inspect", "--type", "image", image, check=False).returncode == 0


def base_image() -> str:
    """The Debian base, debootstrapped once per machine; ImagesUnavailable says what is missing."""
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            raise ImagesUnavailable(f"{tool} is not installed (apt-get install buildah debootstrap)")
    if exists(BASE):
        return BASE
    mirror = apt_mirror()
    if mirror is None:
        raise ImagesUnavailable(f"no apt source for Debian {SUITE} on this machine to debootstrap from")
    with tempfile.TemporaryDirectory(prefix="rootfs-") as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,python-is-python3,ca-certificates",
             SUITE, rootfs, mirror],
            check=True, capture_output=True,
        )  # fmt: skip
        container = buildah("from", "scratch").stdout.strip()
        buildah("copy", container, rootfs, "/")
    # Debian marks its Python externally managed; images install into it on purpose
    buildah("config", "--env", "PIP_BREAK_SYSTEM_PACKAGES=1", container)
    buildah("commit", container, BASE)
    buildah("rm", container)
    return BASE


def build(
    target: str | None,
    tag: str,
    base: str,
    *,
    context: Path = REPO,
    dockerfile: Path | None = None,
    build_args: dict[str, str] | None = None,
) -> str:
    """``buildah bud`` with this machine's torch wheel and CA bundle; returns ``tag``."""
    wheel = sorted(WHEELS.glob("torch-2.13.0*cp311*.whl"))
    args = [
        "bud", "--isolation", "chroot", "--network", "host", "--layers=false",
        "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--build-arg", f"PYTHON_BASE={base}",
        "-t", tag,
    ]  # fmt: skip
    if target:
        args += ["--target", target]
    if dockerfile:
        args += ["-f", str(dockerfile)]
    if wheel:  # the CPU build on this machine's disk, instead of a multi-gigabyte download
        args += ["-v", f"{WHEELS}:{WHEELS}:ro", "--build-arg", f"TORCH_SPEC={wheel[0]}"]
    for name, value in (build_args or {}).items():
        args += ["--build-arg", f"{name}={value}"]
    buildah(*args, str(context))
    # the tag moved to the new image: the one it named before is a full copy (vfs), dangling; two
    # dozen runs of the e2e suite left 47 GiB of them and the local node tainted itself disk-pressure
    buildah("rmi", "--prune", check=False)
    return tag


def archive(image: str, path: Path, name: str) -> Path:
    """The image as a docker-archive tagged ``name`` (what ``ctr images import`` and ``kind load``
    take, named as a pod's image reference resolves: docker.io/library/NAME:TAG for NAME:TAG)."""
    buildah("push", image, f"docker-archive:{path}:{name}")
    return path
