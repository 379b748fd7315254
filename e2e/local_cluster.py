"""A real one-node Kubernetes cluster started on this machine (``pytest e2e --e2e --cluster=local``).

In the spirit of Kubernetes' ``hack/local-up-cluster.sh``: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubelet and kube-proxy from a directory of server binaries
(``KUBE_BIN_DIR``: a release's server tarball, or built from source), containerd, runc and the CNI
plugins from Debian's packages. Everything it writes lives in one work directory, and ``stop``
undoes what ``start`` did on the host (addresses, bridge, iptables chains, mounts, processes).

What a machine like this one needs (each found by a failure on it):
- cgroup v1 (no unified hierarchy): kubelet ``failCgroupV1: false`` and ``cgroupDriver: cgroupfs``,
  with runc (crun refuses hybrid mode).
- root without CAP_SYS_RESOURCE: containerd's ``restrict_oom_score_adj = true``, or every pod
  sandbox fails writing ``oom_score_adj``.
- no kernel modules to load (no ``dummy``): the node's address lives on ``lo``.
- no DNS for the node's name: the API server reaches the kubelet by
  ``--kubelet-preferred-address-types=InternalIP``; pods reach the API server through the
  ``kubernetes`` Service (``--endpoint-reconciler-type=lease``, an advertise address pods can
  route to); no cluster DNS, so tests address Services by ClusterIP.
- pods share one bridge: kube-proxy ``masqueradeAll``, or a pod calling a Service that lands on
  another pod of the bridge gets its answer from an address it never called.
- no registry: the sandbox ("pause") image is a static binary built here that waits for a signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import images
from tests.images import buildah

NODE = "e2e-node"
NODE_IP = "10.254.254.1"  # on lo: this machine's own address, routable from its pods
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
API_PORT = 6443
BRIDGE = "cni0"
PAUSE_IMAGE = "docker.io/library/pause:e2e"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
HOST_TOOLS = ("etcd", "containerd", "ctr", "runc", "iptables", "iptables-save", "iptables-restore", "ip", "openssl",
              "gcc", "buildah")  # fmt: skip
CNI_PLUGINS = Path("/usr/lib/cni")
PAUSE_SOURCE = """
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    for (;;) pause();
}
"""


def missing(bin_dir: Path | None) -> list[str]:
    """What this machine lacks to run the cluster, in words a skip reason can carry."""
    lacks = []
    if os.geteuid() != 0:
        lacks.append("root (kubelet, containerd and the CNI plugins need it)")
    if bin_dir is None:
        lacks.append("KUBE_BIN_DIR (a directory with kube-apiserver, kubelet, ...; see README 'Run the e2e')")
    else:
        lacks += [f"{bin_dir}/{name}" for name in BINARIES if not (bin_dir / name).is_file()]
    lacks += [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    lacks += [f"the CNI plugin {CNI_PLUGINS}/{p}" for p in ("bridge", "host-local", "loopback", "portmap")
              if not (CNI_PLUGINS / p).is_file()]  # fmt: skip
    return lacks


@dataclass
class LocalCluster:
    bin_dir: Path
    work: Path
    log: Callable[[str], None] = print
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.work / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.work / "containerd" / "containerd.sock"

    def start(self) -> Path:
        """Bring the node up and return the admin kubeconfig; on any failure, undo what was done."""
        started = time.monotonic()
        try:
            self._host_network()
            self._certificates()
            self._control_plane()
            self._containerd()
            self.load_image(self._pause_image(), PAUSE_IMAGE)
            self._node()
        except BaseException:
            self.stop()
            raise
        self.log(f"local cluster up in {time.monotonic() - started:.0f} s (work directory {self.work})")
        return self.kubeconfig

    # --- host network -------------------------------------------------------------------------

    def _host_network(self) -> None:
        for key, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
            path = Path("/proc/sys") / key
            if path.exists():
                before = path.read_text().strip()
                path.write_text(value)
                self._undo.append(lambda p=path, b=before: p.write_text(b))
        _run("ip", "addr", "replace", f"{NODE_IP}/32", "dev", "lo")  # replace: a run killed before its undo left it
        self._undo.append(lambda: _run("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False))
        self._undo.append(lambda: _run("ip", "link", "del", BRIDGE, check=False))
        self._undo.append(_remove_chains)

    # --- certificates -------------------------------------------------------------------------

    def _certificates(self) -> None:
        pki = self.work / "pki"
        pki.mkdir(parents=True)
        _run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "ca.key"))
        _run("openssl", "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-sha256", "-days", "3",
             "-subj", "/CN=reranker-e2e-ca", "-out", str(pki / "ca.crt"))  # fmt: skip
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                 "localhost"]  # fmt: skip
        sans = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in ("127.0.0.1", NODE_IP, API_SERVICE_IP)])
        self._leaf(pki, "apiserver", "/CN=kube-apiserver", sans)
        # one client identity for every component and for the tests: system:masters
        self._leaf(pki, "admin", "/O=system:masters/CN=e2e-admin", None)
        _run("openssl", "genrsa", "-out", str(pki / "sa.key"), "2048")
        _run("openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                       "certificate-authority": str(pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                                 "client-key": str(pki / "admin.key")}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }  # fmt: skip
        self.kubeconfig.write_text(json.dumps(config))

    @staticmethod
    def _leaf(pki: Path, name: str, subject: str, sans: str | None) -> None:
        key, csr, crt = (str(pki / f"{name}.{ext}") for ext in ("key", "csr", "crt"))
        _run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        _run("openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr,
             *(["-addext", f"subjectAltName={sans}"] if sans else []))  # fmt: skip
        _run("openssl", "x509", "-req", "-in", csr, "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
             "-CAcreateserial", "-days", "3", "-sha256", "-copy_extensions", "copyall", "-out", crt)  # fmt: skip

    # --- control plane ------------------------------------------------------------------------

    def _control_plane(self) -> None:
        pki, kubeconfig = self.work / "pki", str(self.kubeconfig)
        self._spawn("etcd", ["etcd", "--data-dir", str(self.work / "etcd"), "--listen-client-urls",
                             "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380"])  # fmt: skip
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            "--etcd-servers=http://127.0.0.1:2379",
            f"--advertise-address={NODE_IP}", f"--secure-port={API_PORT}", "--bind-address=0.0.0.0",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={pki}/admin.crt", f"--kubelet-client-key={pki}/admin.key",
            "--kubelet-preferred-address-types=InternalIP",
            "--endpoint-reconciler-type=lease",
            "--allow-privileged=true",
        ])  # fmt: skip
        self._wait(self._api_ready, "the API server to be ready", 90)
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            "--use-service-account-credentials=true", "--leader-elect=false", "--bind-address=127.0.0.1",
        ])  # fmt: skip
        self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
        ])  # fmt: skip

    def _api_ready(self) -> bool:
        pki = self.work / "pki"
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        try:
            with httpx.Client(verify=tls) as client:
                return client.get(f"https://127.0.0.1:{API_PORT}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # --- the node -----------------------------------------------------------------------------

    def _containerd(self) -> None:
        root = self.work / "containerd"
        net = self.work / "cni"
        (net / "net.d").mkdir(parents=True)
        (net / "net.d" / "10-bridge.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0",
            "name": "e2e",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(net / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }))  # fmt: skip
        (root / "config.toml").parent.mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(f"""version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: no lowering a container's OOM score below the runtime's
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{net}/net.d"
""")
        self._spawn("containerd", ["containerd", "--config", str(root / "config.toml")])
        self._wait(lambda: self.containerd_socket.exists() and self._ctr("version", check=False).returncode == 0,
                   "containerd to answer", 60)  # fmt: skip

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args, check=check)

    def load_image(self, archive: Path, name: str) -> None:
        """Import a docker-archive into the node's containerd (as ``kind load`` does for kind)."""
        self._ctr("images", "import", "--no-unpack=false", str(archive))
        listed = self._ctr("images", "list", "--quiet").stdout.split()
        if name not in listed:
            raise AssertionError(f"{name} not in containerd after importing {archive}: {listed}")

    def _pause_image(self) -> Path:
        folder = self.work / "pause"
        folder.mkdir()
        (folder / "pause.c").write_text(PAUSE_SOURCE)
        _run("gcc", "-static", "-Os", "-o", str(folder / "pause"), str(folder / "pause.c"))
        container = buildah("from", "scratch").stdout.strip()
        try:
            buildah("copy", container, str(folder / "pause"), "/pause")
            buildah("config", "--entrypoint", '["/pause"]', container)
            buildah("commit", container, "localhost/pause:e2e")
        finally:
            buildah("rm", container, check=False)
        return images.archive("localhost/pause:e2e", folder / "pause.tar", PAUSE_IMAGE)

    def _node(self) -> None:
        kubelet = self.work / "kubelet"
        kubelet.mkdir()
        (self.work / "resolv.conf").write_text("")  # no cluster DNS; pods get no name servers
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.work / "pki" / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            "resolvConf": str(self.work / "resolv.conf"),
            "podLogsDir": str(self.work / "pod-logs"),
            "serializeImagePulls": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }  # fmt: skip
        (kubelet / "config.json").write_text(json.dumps(config))
        self._spawn("kubelet", [
            str(self.bin_dir / "kubelet"), f"--config={kubelet}/config.json", f"--kubeconfig={self.kubeconfig}",
            f"--hostname-override={NODE}", f"--node-ip={NODE_IP}", f"--root-dir={kubelet}",
            f"--cert-dir={kubelet}/pki",
        ])  # fmt: skip
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE,
            "iptables": {"masqueradeAll": True},
            "conntrack": {"maxPerCore": 0},
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
        }
        (self.work / "kube-proxy.json").write_text(json.dumps(proxy))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={self.work}/kube-proxy.json"])
        self._wait(self._node_ready, f"node {NODE} to be Ready", 120)
        self._wait(lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
                   "the default ServiceAccount", 60)  # fmt: skip

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl") or str(Path(__file__).resolve().parent.parent / ".cache/tools/bin/kubectl")
        return _run(kubectl, f"--kubeconfig={self.kubeconfig}", *args, check=check)

    # --- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> None:
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("wb") as out:
            self.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                    start_new_session=True)  # fmt: skip

    def _wait(self, check: Callable[[], bool], what: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not check():
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.tail(dead[0])}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
            time.sleep(0.5)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.work / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stop everything, containers first, and leave the host as it was."""
        if "containerd" in self.processes:
            self._stop_process("kubelet")
            with contextlib.suppress(Exception):
                self._remove_pods()
        for name in ("kube-proxy", "kubelet", "containerd", "kube-scheduler", "kube-controller-manager",
                     "kube-apiserver", "etcd"):  # fmt: skip
            self._stop_process(name)
        _kill_shims(self.containerd_socket)
        _unmount_under(self.work)
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def _remove_pods(self) -> None:
        """The pods' containers outlive kubelet and containerd (their shims keep them): stop them."""
        tasks = self._ctr("tasks", "list", "--quiet", check=False).stdout.split()
        for task in tasks:
            self._ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self._ctr("tasks", "list", "--quiet", check=False).stdout.split():
            time.sleep(0.5)
        for task in tasks:
            self._ctr("tasks", "delete", task, check=False)
        for container in self._ctr("containers", "list", "--quiet", check=False).stdout.split():
            self._ctr("containers", "delete", container, check=False)
        for netns in Path("/var/run/netns").glob("cni-*"):
            _run("ip", "netns", "delete", netns.name, check=False)

    def _stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _kill_shims(socket: Path) -> None:
    """containerd's shims for this cluster's containers (they name its socket), if any survived."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if (
                command
                and command[0].endswith(b"containerd-shim-runc-v2")
                and str(socket).encode() in b" ".join(command)
            ):
                os.kill(int(proc.name), signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    """Volumes, rootfs overlays and sandbox mounts under the work directory, deepest first."""
    prefix = str(folder.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        _run("umount", "-l", point, check=False)


def _remove_chains() -> None:
    """The iptables chains kube-proxy and the CNI plugins left (KUBE-*, CNI-*), and the rules that jump to them."""
    for table in ("nat", "filter", "mangle"):
        saved = _run("iptables-save", "-t", table, check=False).stdout
        if "KUBE-" not in saved and "CNI-" not in saved:
            continue
        kept = [line for line in saved.splitlines() if "KUBE-" not in line and "CNI-" not in line]
        subprocess.run(["iptables-restore", "-T", table], input="\n".join(kept) + "\n", text=True, check=False)
