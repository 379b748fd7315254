"""End-to-end fixtures: a real cluster, the real images, the real chart.

Opt-in (``pytest e2e --e2e``); ``--cluster`` picks the cluster:
- ``kind`` (default): a kind cluster made here; images built with docker and ``kind load``ed.
- ``local``: a real one-node cluster started here (``e2e/local_cluster.py``) from the Kubernetes
  server binaries in ``KUBE_BIN_DIR``, with containerd, runc and the CNI plugins from apt; images
  built with buildah (``tests/images.py``) and imported into its containerd.
- ``existing``: the cluster of the current KUBECONFIG; images built with buildah and handed, one
  docker-archive at a time, to ``--image-load-command`` (``{archive}`` and ``{image}`` are filled
  in, e.g. ``"kind load image-archive {archive}"``).
Each skips with the reason when something it needs is missing, always removes what it made
(``--keep-cluster`` keeps the cluster), and on a failure prints the operator's log, the events and
the resources' YAML.

What a real cluster showed that the emulator (``tests/operator/emulator.py``) cannot:
- A volume mounted at a path hides what the image has there: a writable emptyDir at ``/models``
  hid every model baked into the image, and the pods crash-looped (the scratch cache now lives
  in ``/var/cache/reranker``).
- A crash loop changes no Deployment status after the first time a pod goes unready; only the
  pods' container statuses show it, and only with a termination message (the server writes its
  last line to ``/dev/termination-log``; ``FallbackToLogsOnError`` covers the rest).
- A baked image's ``HF_HUB_OFFLINE=1`` reaches every container run from it, the model loader
  Job's included, unless the pod spec says otherwise.
- The ``kube-apiserver`` of an OpenShift-flavoured tree (the one this machine builds) adds an
  ``openshift-service-ca.crt`` ConfigMap to every projected service-account volume; pods start all
  the same.
- No cluster DNS on the local cluster: pods reach Services by ClusterIP, and the Reranker's
  ``status.url`` (a DNS name) is checked for its form, not called.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e import local_cluster
from tests import images

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".cache" / "tools" / "bin"
CLUSTER = "reranker-e2e"
NAMESPACE = "e2e"
SERVER_IMAGE = "reranker-server:e2e"  # the Dockerfile's server target, a hub model baked in (BAKE_MODEL)
MODEL_IMAGE = "reranker-server:e2e-model"  # that image with a checkpoint copied in (e2e/Dockerfile.model)
OPERATOR_IMAGE = "reranker-operator:e2e"
REGISTRAR_MACHINE = "machine"  # a reranker-server outside the cluster registers as this machine
BAKED_MODEL = "/models/minilm-cross"  # e2e/Dockerfile.model's checkpoint
HUB_MODEL = "acme/tiny-reranker"  # BAKE_MODEL's, from the hub stand-in (tests/server/fake_hub.py)


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and (TOOLS / name).exists():
        found = str(TOOLS / name)
    return found


def kube_bin_dir() -> Path | None:
    configured = os.environ.get("KUBE_BIN_DIR")
    return Path(configured) if configured else None


def missing_for(cluster: str, load_command: str | None) -> list[str]:
    """What this machine lacks for ``--cluster``."""
    missing = [name for name in ("helm", "kubectl") if tool(name) is None]
    if cluster == "kind":
        missing += [name for name in ("docker", "kind") if tool(name) is None]
        if tool("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            missing.append("a running Docker engine")
    elif cluster == "local":
        missing += local_cluster.missing(kube_bin_dir())
    elif cluster == "existing":
        if load_command is None:
            missing.append("--image-load-command (how the images reach the cluster)")
        if tool("buildah") is None:
            missing.append("buildah")
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which, load = config.getoption("--cluster"), config.getoption("--image-load-command")
    for item in items:
        if "e2e" not in item.keywords:
            continue
        if not config.getoption("--e2e"):
            item.add_marker(pytest.mark.skip(reason="the e2e suite is opt-in: pass --e2e (or run `make e2e`)"))
            continue
        missing = missing_for(which, load)
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"e2e --cluster={which} needs {', '.join(missing)}"))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.session.config.stash.setdefault(FAILED, True)  # type: ignore[call-overload]


FAILED = pytest.StashKey[bool]()


@dataclass
class Reach:
    """What the suite can do from this machine on this kind of cluster."""

    host_address: str | None  # where pods reach a server this suite runs here (None: they can't)
    machines_in_namespaces: bool  # external machines can be network namespaces of this host
    host_path_volumes: bool  # a hostPath PersistentVolume is this machine's disk


class Kube:
    """kubectl and helm against the cluster, with its own kubeconfig."""

    def __init__(self, kubeconfig: Path, reach: Reach) -> None:
        self.kubeconfig = kubeconfig
        self.reach = reach
        self.env = os.environ | {"KUBECONFIG": str(kubeconfig)}

    def run(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 600) -> str:
        binary = tool(args[0]) or args[0]
        result = subprocess.run(
            [binary, *args[1:]], env=self.env, capture_output=True, text=True, input=input, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 600) -> str:
        return self.run("kubectl", *args, check=check, input=input, timeout=timeout)

    def registrar_env(self, machine: str, folder: Path) -> dict[str, str]:
        """An environment whose kubeconfig holds the chart's token for ``machine`` (as README says)."""
        token = self.kubectl("create", "token", f"reranker-registrar-{machine}", "-n", NAMESPACE).strip()
        kubeconfig = folder / f"{machine}.kubeconfig"
        kubeconfig.write_text(self.kubeconfig.read_text())
        env = os.environ | {"KUBECONFIG": str(kubeconfig)}
        for args in (["config", "set-credentials", machine, f"--token={token}"],
                     ["config", "set-context", "--current", f"--user={machine}"]):  # fmt: skip
            subprocess.run([tool("kubectl") or "kubectl", *args], env=env, check=True, capture_output=True)
        return env

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, *selectors: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        out = self.kubectl("get", kind, "-n", namespace, *selectors, "-o", "json")
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def wait_for(self, check: Any, what: str, within: float = 300, every: float = 2) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(every)
        raise AssertionError(f"timed out after {within}s waiting for {what}")

    def dump(self) -> None:
        """What a person debugging a failed run wants to see."""
        print("\n===== operator logs =====")
        print(self.kubectl("logs", "-n", "reranker-system", "deployment/reranker-operator",
                           "--tail=300", check=False))  # fmt: skip
        print("===== events =====")
        print(self.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False))
        print("===== resources =====")
        print(self.kubectl("get", "rerankers,rerankerendpoints,deployments,services,hpa,pdb,endpointslices,pods,jobs,"
                           "pvc", "-n", NAMESPACE, "-o", "yaml", check=False))  # fmt: skip


# --- images ------------------------------------------------------------------------------------


@contextlib.contextmanager
def hub_stand_in(host: str = "127.0.0.1") -> Iterator[str]:
    """The hub stand-in serving HUB_MODEL (the tiny XLM-R fixture); yields its URL."""
    from tests.model_fixtures import xlmr_cross_dir
    from tests.server.fake_hub import FakeHub, serving

    with serving(FakeHub.from_dir(HUB_MODEL, xlmr_cross_dir()), host) as hub:
        yield hub.url


def _model_context(folder: Path) -> Path:
    from tests.model_fixtures import minilm_cross_dir

    shutil.copytree(minilm_cross_dir(), folder / "model")
    return folder


def build_with_docker() -> None:
    """kind: docker builds, on the host network so the build reaches the hub stand-in."""
    docker = tool("docker") or "docker"
    with hub_stand_in() as hub:
        subprocess.run([docker, "build", "--network", "host", "--target", "server", "--build-arg",
                        f"BAKE_MODEL={HUB_MODEL}", "--build-arg", f"HF_ENDPOINT={hub}", "-t", SERVER_IMAGE, str(REPO)],
                       check=True)  # fmt: skip
    subprocess.run([docker, "build", "--target", "operator", "-t", OPERATOR_IMAGE, str(REPO)], check=True)
    with tempfile.TemporaryDirectory() as context:
        subprocess.run([docker, "build", "-f", str(REPO / "e2e" / "Dockerfile.model"), "--build-arg",
                        f"BASE={SERVER_IMAGE}", "-t", MODEL_IMAGE, str(_model_context(Path(context)))],
                       check=True)  # fmt: skip


def build_with_buildah(folder: Path) -> dict[str, Path]:
    """local and existing: buildah builds (tests/images.py); each image as a docker-archive."""
    base = images.base_image()
    local = {name: f"localhost/{name}" for name in (SERVER_IMAGE, MODEL_IMAGE, OPERATOR_IMAGE)}
    with hub_stand_in() as hub:
        images.build("server", local[SERVER_IMAGE], base, build_args={"BAKE_MODEL": HUB_MODEL, "HF_ENDPOINT": hub})
    images.build("operator", local[OPERATOR_IMAGE], base)
    with tempfile.TemporaryDirectory() as context:
        images.build(None, local[MODEL_IMAGE], base, context=_model_context(Path(context)),
                     dockerfile=REPO / "e2e" / "Dockerfile.model",
                     build_args={"BASE": local[SERVER_IMAGE]})  # fmt: skip
    # named as pods name them: "reranker-server:e2e" is docker.io/library/reranker-server:e2e
    return {name: images.archive(local[name], folder / f"{name.replace(':', '-')}.tar", f"docker.io/library/{name}")
            for name in (MODEL_IMAGE, OPERATOR_IMAGE)}  # fmt: skip


# --- clusters ----------------------------------------------------------------------------------


def install_chart(kube: Kube) -> None:
    """The README's helm install, with the suite's images and a registered machine."""
    kube.kubectl("create", "namespace", NAMESPACE)  # before the chart: the machine's Role lives there
    repo, tag = OPERATOR_IMAGE.split(":")
    server_repo, server_tag = MODEL_IMAGE.split(":")
    kube.run("helm", "install", "reranker", str(REPO / "charts" / "reranker"), "-n", "reranker-system",
             "--create-namespace", "--wait", "--timeout", "5m",
             "--set", f"operator.image.repository={repo}", "--set", f"operator.image.tag={tag}",
             "--set", "operator.image.pullPolicy=IfNotPresent",
             "--set", f"server.image.repository={server_repo}", "--set", f"server.image.tag={server_tag}",
             "--set", f"registrar.machines[0].name={REGISTRAR_MACHINE}",
             "--set", f"registrar.machines[0].namespace={NAMESPACE}")  # fmt: skip


@contextlib.contextmanager
def kind_cluster(folder: Path, keep: bool) -> Iterator[Kube]:
    kind = tool("kind") or "kind"
    kubeconfig = folder / "kubeconfig"
    build_with_docker()
    subprocess.run([kind, "create", "cluster", "--name", CLUSTER, "--config", str(REPO / "e2e" / "kind-config.yaml"),
                    "--kubeconfig", str(kubeconfig), "--wait", "120s"], check=True)  # fmt: skip
    try:
        for image in (MODEL_IMAGE, OPERATOR_IMAGE):
            subprocess.run([kind, "load", "docker-image", image, "--name", CLUSTER], check=True)
        gateway = subprocess.run(
            ["docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        yield Kube(kubeconfig, Reach(next(a for a in gateway if "." in a), False, False))
    finally:
        if not keep:
            subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], check=False)


@contextlib.contextmanager
def local(folder: Path) -> Iterator[Kube]:
    """Always stopped at the end: its processes would outlive the test session otherwise."""
    bin_dir = kube_bin_dir()
    assert bin_dir is not None  # missing_for() skipped the suite otherwise
    archives = build_with_buildah(folder)
    node = local_cluster.LocalCluster(bin_dir, folder / "cluster")
    kubeconfig = node.start()
    try:
        for name, archive in archives.items():
            node.load_image(archive, f"docker.io/library/{name}")
        yield Kube(kubeconfig, Reach(local_cluster.NODE_IP, True, True))
    finally:
        node.stop()


@contextlib.contextmanager
def existing(folder: Path, load_command: str) -> Iterator[Kube]:
    kubeconfig = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    for name, archive in build_with_buildah(folder).items():
        command = load_command.format(archive=shlex.quote(str(archive)), image=shlex.quote(name))
        subprocess.run(command, shell=True, check=True)
    yield Kube(kubeconfig, Reach(None, False, False))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    which = request.config.getoption("--cluster")
    keep = request.config.getoption("--keep-cluster")
    folder = tmp_path_factory.mktemp("e2e")
    started = time.monotonic()
    made: contextlib.AbstractContextManager[Kube]
    if which == "kind":
        made = kind_cluster(folder, keep)
    elif which == "local":
        made = local(folder)
    else:
        made = existing(folder, request.config.getoption("--image-load-command"))
    with made as kube:
        try:
            install_chart(kube)
            print(f"\ne2e --cluster={which}: images, cluster and chart in {time.monotonic() - started:.0f} s")
            yield kube
        finally:
            if request.session.config.stash.get(FAILED, False):
                kube.dump()
            if which == "existing" and not keep:  # leave the user's cluster as it was
                kube.run("helm", "uninstall", "reranker", "-n", "reranker-system", "--wait", check=False)
                kube.kubectl("delete", "namespace", NAMESPACE, "reranker-system", "--wait=true", check=False)
