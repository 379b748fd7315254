"""kind end-to-end fixtures: a real cluster, the real images, the real chart.

Opt-in (``pytest e2e --e2e`` or ``make e2e``); without docker, kind, helm or kubectl it skips
and says which are missing. It always deletes the cluster it made (``--keep-cluster`` keeps it),
and on a failure it prints the operator's logs, the events and the resources' YAML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".cache" / "tools" / "bin"
CLUSTER = "reranker-e2e"
NAMESPACE = "e2e"
SERVER_IMAGE = "reranker-server:e2e"
MODEL_IMAGE = "reranker-server:e2e-model"
OPERATOR_IMAGE = "reranker-operator:e2e"
REGISTRAR_MACHINE = "host"  # the host's reranker-server registers as this machine, with its own token
BAKED_MODEL = "/models/minilm-cross"


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and (TOOLS / name).exists():
        found = str(TOOLS / name)
    return found


def missing_tools() -> list[str]:
    missing = [name for name in ("docker", "kind", "helm", "kubectl") if tool(name) is None]
    if "docker" not in missing:
        probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
        if probe.returncode != 0:
            missing.append("a running Docker engine")
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" not in item.keywords:
            continue
        if not config.getoption("--e2e"):
            item.add_marker(pytest.mark.skip(reason="kind e2e suite is opt-in: pass --e2e (or run `make e2e`)"))
            continue
        missing = missing_tools()
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"kind e2e needs {', '.join(missing)}: not found here"))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.session.config.stash.setdefault(FAILED, True)  # type: ignore[call-overload]


FAILED = pytest.StashKey[bool]()


class Kube:
    """kubectl and helm against the kind cluster, with its own kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
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
        print(self.kubectl("get", "rerankers,rerankerendpoints,deployments,services,hpa,pdb,endpointslices,pods",
                           "-n", NAMESPACE, "-o", "yaml", check=False))  # fmt: skip


def build_images() -> None:
    """The server and operator images, and the server with the test checkpoint baked in."""
    from tests.model_fixtures import minilm_cross_dir

    docker = tool("docker") or "docker"
    subprocess.run([docker, "build", "--target", "server", "-t", SERVER_IMAGE, str(REPO)], check=True)
    subprocess.run([docker, "build", "--target", "operator", "-t", OPERATOR_IMAGE, str(REPO)], check=True)
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(minilm_cross_dir(), Path(context) / "model")
        subprocess.run(
            [docker, "build", "-f", str(REPO / "e2e" / "Dockerfile.model"), "--build-arg", f"BASE={SERVER_IMAGE}",
             "-t", MODEL_IMAGE, context],
            check=True,
        )  # fmt: skip


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    kind = tool("kind") or "kind"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    build_images()
    subprocess.run(
        [kind, "create", "cluster", "--name", CLUSTER, "--config", str(REPO / "e2e" / "kind-config.yaml"),
         "--kubeconfig", str(kubeconfig), "--wait", "120s"],
        check=True,
    )  # fmt: skip
    kube = Kube(kubeconfig)
    try:
        for image in (MODEL_IMAGE, OPERATOR_IMAGE):
            subprocess.run([kind, "load", "docker-image", image, "--name", CLUSTER], check=True)
        kube.kubectl("create", "namespace", NAMESPACE)  # before the chart: the machine's Role lives there
        repo, tag = OPERATOR_IMAGE.split(":")
        server_repo, server_tag = MODEL_IMAGE.split(":")
        kube.run("helm", "install", "reranker", str(REPO / "charts" / "reranker"), "-n", "reranker-system",
                 "--create-namespace", "--wait", "--timeout", "5m",
                 "--set", f"operator.image.repository={repo}", "--set", f"operator.image.tag={tag}",
                 "--set", f"server.image.repository={server_repo}", "--set", f"server.image.tag={server_tag}",
                 "--set", f"registrar.machines[0].name={REGISTRAR_MACHINE}",
                 "--set", f"registrar.machines[0].namespace={NAMESPACE}")  # fmt: skip
        yield kube
    finally:
        if request.session.config.stash.get(FAILED, False):
            kube.dump()
        if not request.config.getoption("--keep-cluster"):
            subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], check=False)
