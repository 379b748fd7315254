"""kmock's Kubernetes emulator, taught what a real kube-apiserver does that the operator relies on.

Every behaviour here was learned from a real API server (Kubernetes 1.36) rejecting code that
passed against a plainer emulator. What it reproduces:
- RBAC: each request is authorized as the real server would (GET -> get/list/watch, POST ->
  create, PATCH -> patch, DELETE -> delete/deletecollection; a server-side apply that creates
  the object needs ``create`` too) against the roles the Helm chart renders, for the operator's
  and the registrar's ServiceAccounts (by bearer token); a refusal is a 403 ``Forbidden`` Status
  and is recorded in ``denied`` (the operator fixtures fail on any);
- the CRDs in ``crds/`` are served as customresourcedefinitions (kopf lists and watches them);
- ``pods/{name}/log`` answers the text a test put in ``pod_logs`` (plain text, as the kubelet's
  log stream is), honouring ``tailLines``; 400 "ContainerCreating" before any;
- ``/apis/keda.sh/v1alpha1`` (KEDA's API, as its CRDs register it) answers 404 unless a test
  sets ``keda`` (scaledobjects are stored either way, so kopf's watch of them needs no restart);
- the scale subresource sets ``spec.replicas`` (a merge patch of a Scale);
- ``/apis/custom.metrics.k8s.io/v1beta1`` answers 404 (no custom-metrics adapter, as on most
  clusters) unless a test sets ``custom_metrics``, as an installed prometheus-adapter would;
- server-side apply (``application/apply-patch+yaml``) creates a missing object;
- new objects get a uid, creationTimestamp, resourceVersion, generation and the URL's namespace
  (and generateName works); a Deployment created without ``replicas`` gets 1 (the autoscaler
  reads the count it then scales from);
- a spec change bumps ``metadata.generation``; status patches don't; a no-op patch changes
  nothing and sends no watch event;
- list honours an equality-based labelSelector;
- deleting an owner deletes what names it in ``ownerReferences``, and an object created for an
  owner that is already gone is deleted too (the garbage collector's job).

What it does not (checked elsewhere, or not at all):
- CRD schemas, defaults and CEL rules on writes: ``tests/operator/cel.py`` evaluates every rule
  with a real CEL implementation, on the defaults, the examples and a table of specs;
- structural schema pruning of unknown fields, and defaulting of stored objects;
- SSA field ownership and list merge keys (an apply is merged like a JSON merge patch);
- built-in controllers (no Pods, no Deployment status unless a test writes it, no HPA, no Job
  controller: tests create the loader's pod and write the Job's status; no scheduler, so no
  ``volume.kubernetes.io/selected-node`` on claims; no ``kubernetes.io/pvc-protection``, so a
  deleted claim goes at once where a real one waits for the last pod using it);
- admission webhooks, quotas, aggregated ClusterRoles, RBAC on non-resource URLs (discovery
  is open, as the ``system:discovery`` role makes it);
- requests without a token are the test harness acting as cluster-admin (a real server would
  call them anonymous);
- the kubelet and the container runtime, which only a real node has (``pytest e2e --e2e
  --cluster=local`` starts one; ``e2e/conftest.py`` lists what it found): a volume hiding what
  the image has at its mount path; a container's restarts and termination message (a test writes
  ``containerStatuses`` here, as ``tests/operator/test_crash_loop.py`` does); an image's own
  environment (``HF_HUB_OFFLINE=1`` in a baked image) reaching every container run from it; a
  Secret volume refreshed in place; Service traffic through kube-proxy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal.dicts import patch_dict  # the same merge kmock applies to the stored object

from tests.operator.rbac import ADMIN, OPERATOR_TOKEN, Authorizer, Denial, registrar_token
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
CUSTOM_METRICS = "/apis/custom.metrics.k8s.io/v1beta1"
KEDA = "/apis/keda.sh/v1alpha1"

# Every kind the operator reads, writes or watches, as discovery lists them.
RESOURCES: dict[str, dict[str, Any]] = {
    "reranker.dev/v1alpha1/rerankers": {"kind": "Reranker", "subresources": {"status"}},
    "reranker.dev/v1alpha1/rerankerendpoints": {"kind": "RerankerEndpoint", "subresources": {"status"}},
    "apps/v1/deployments": {"kind": "Deployment", "subresources": {"status", "scale"}},
    "v1/services": {"kind": "Service", "subresources": {"status"}},
    "v1/configmaps": {"kind": "ConfigMap", "subresources": set()},
    "autoscaling/v2/horizontalpodautoscalers": {"kind": "HorizontalPodAutoscaler", "subresources": {"status"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "subresources": {"status"}},
    "discovery.k8s.io/v1/endpointslices": {"kind": "EndpointSlice", "subresources": set()},
    "networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy", "subresources": set()},
    "coordination.k8s.io/v1/leases": {"kind": "Lease", "subresources": set()},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "subresources": {"status"}},
    "batch/v1/jobs": {"kind": "Job", "subresources": {"status"}},
    "v1/pods": {"kind": "Pod", "subresources": {"status", "log"}},
    "keda.sh/v1alpha1/scaledobjects": {"kind": "ScaledObject", "subresources": {"status"}},
    "storage.k8s.io/v1/storageclasses": {"kind": "StorageClass", "subresources": set(), "namespaced": False},
    "v1/events": {"kind": "Event", "subresources": set()},
    "v1/namespaces": {"kind": "Namespace", "subresources": set(), "namespaced": False},
    CRDS: {"kind": "CustomResourceDefinition", "subresources": {"status"}, "namespaced": False},
}
_VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


@contextlib.asynccontextmanager
async def running_operator(
    url: str, workdir: Path, settings: dict[str, str]
) -> AsyncIterator[tuple[Callable[[str], Path], Path]]:
    """A real ``reranker-operator`` process pointed at the emulator at ``url``, as the chart's
    operator ServiceAccount.

    Yields (machine name -> that registrar's kubeconfig, operator log); ``settings`` are its
    environment variables.
    """
    kubeconfig, log = workdir / "kubeconfig", workdir / "operator.log"
    write_kubeconfig(kubeconfig, url, OPERATOR_TOKEN)

    def registrar(machine: str) -> Path:
        path = workdir / f"registrar-{machine}.kubeconfig"
        write_kubeconfig(path, url, registrar_token(machine))
        return path

    # a port of its own for /metrics: operators of concurrent tests must not collide on the default
    own = {"KUBECONFIG": str(kubeconfig), "RERANKER_IMAGE": "reranker-server:test", "METRICS_PORT": str(free_port())}
    env = os.environ | own | settings
    with log.open("w") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reranker_operator", "--all-namespaces", env=env, stdout=sink, stderr=sink
        )
        try:
            yield registrar, log
        finally:
            # an operator that already exited (its failure is the test's to report) has nothing to stop
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()


def write_kubeconfig(path: Any, url: str, token: str) -> None:
    """A kubeconfig that points kopf, the operator or a registrar at the emulator as ``token``'s user."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: emu, cluster: {{server: '{url}'}}}}]\n"
        f"users: [{{name: op, user: {{token: {token}}}}}]\n"
        "contexts: [{name: emu, context: {cluster: emu, user: op}}]\ncurrent-context: emu\n"
    )


def _default(resource: Any, obj: dict[str, Any]) -> None:
    """The defaulting the operator relies on: a Deployment created without replicas has 1."""
    if getattr(resource, "plural", None) == "deployments" and isinstance(obj.get("spec"), dict):
        obj["spec"].setdefault("replicas", 1)


class ApiServerEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=info["kind"],
                namespaced=info.get("namespaced", True),
                verbs=_VERBS,
                subresources=info["subresources"],
            )
        self._versions = itertools.count(1)
        for path in sorted((REPO / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            self.objects[CRDS, None, crd["metadata"]["name"]] = crd
        self.authorizer: Authorizer | None = None
        self.custom_metrics: list[str] | None = None  # e.g. ["pods/reranker_queue_depth"]; None: no adapter
        self.keda = False  # KEDA installed: its API group is discoverable
        self.denied: list[Denial] = []
        self.pod_logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> its log
        # (user, verbs, resource) -> count; an apply that creates is "patch+create"
        self.requests: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def _custom_metrics_discovery(self) -> aiohttp.web.Response:
        """What a custom-metrics adapter registers (an APIService), or 404 when none is installed."""
        if self.custom_metrics is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        resources = [{"name": name, "namespaced": True, "kind": "MetricValueList", "verbs": ["get"]}
                     for name in self.custom_metrics]  # fmt: skip
        return aiohttp.web.json_response(
            {"kind": "APIResourceList", "groupVersion": "custom.metrics.k8s.io/v1beta1", "resources": resources}
        )

    def _pod_log(self, request: kmock.Request) -> aiohttp.web.Response:
        log = self.pod_logs.get((request.namespace or "", request.name or ""))
        if log is None:
            message = f'container "{request.params.get("container")}" in pod "{request.name}" is waiting to start'
            status = {"kind": "Status", "code": 400, "reason": "BadRequest", "message": message}
            return aiohttp.web.json_response(status, status=400)
        lines = log.splitlines()[-int(request.params.get("tailLines") or 0) :]
        return aiohttp.web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def enforce_rbac(self, authorizer: Authorizer) -> None:
        """From now on, authorize every request as the real API server would."""
        self.authorizer = authorizer

    def _authorize(self, request: kmock.Request) -> aiohttp.web.Response | None:
        """Count the request; refuse it (403) when the caller's roles don't allow every verb it needs."""
        resource = request.resource
        if resource is None or not resource.plural:
            return None  # discovery (/api, /apis/GROUP/VERSION): open to every authenticated caller
        user = self._user(request)
        plural = resource.plural + (f"/{request.subresource}" if request.subresource else "")
        verbs = self._verbs(request)
        self.requests[user, "+".join(verbs), f"{resource.group}/{plural}".lstrip("/")] += 1
        if self.authorizer is None or user == ADMIN:
            return None
        for verb in verbs:
            denial = self.authorizer.check(user, verb, resource.group or "", plural, request.namespace, request.name)
            if denial is not None:
                self.denied.append(denial)
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": denial.message,
                          "reason": "Forbidden", "code": 403}  # fmt: skip
                return aiohttp.web.json_response(status, status=403)
        return None

    def _user(self, request: kmock.Request) -> str:
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        return self.authorizer.user(token) if self.authorizer else (token or ADMIN)

    def _verbs(self, request: kmock.Request) -> list[str]:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if method == "GET":
            if request.params.get("watch") in ("true", "1"):
                return ["watch"]
            return ["get"] if request.name else ["list"]
        if method == "POST":
            return ["create"]
        if method == "PUT":
            return ["update"]
        if method == "DELETE":
            return ["delete"] if request.name else ["deletecollection"]
        if method == "PATCH":
            key = (request.resource, request.namespace, request.name)
            exists = key in self._objects and not self._objects[key].deleted
            applying = "apply-patch" in (request.headers.get("Content-Type") or "")
            return ["patch"] if exists or not applying else ["patch", "create"]
        return [method.lower()]

    def _stamp(self, obj: dict[str, Any], namespace: str | None) -> None:
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta.setdefault("namespace", namespace)  # the API server takes it from the URL
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["generation"] = 1
        meta["resourceVersion"] = str(next(self._versions))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        try:
            return await self._serve(request)
        finally:
            self._forget(request)

    def _forget(self, request: kmock.Request) -> None:
        """Drop a served request from kmock's history: kmock matches each new request against
        every past one (quadratic), which made 100 Rerankers take a minute. Nothing here asserts
        on that history; ``requests`` counts what was asked."""
        for log in (self._requests, *(payload._requests for payload in self._payloads)):
            log[:] = [r for r in log if r is not request]

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.url.path.rstrip("/") == CUSTOM_METRICS:
            self.requests[self._user(request), "get", "custom.metrics.k8s.io (discovery)"] += 1
            return self._custom_metrics_discovery()
        if request.url.path.rstrip("/") == KEDA:
            if not self.keda:
                return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
            resources = [{"name": "scaledobjects", "singularName": "scaledobject", "namespaced": True,
                          "kind": "ScaledObject", "verbs": sorted(_VERBS), "shortNames": ["so"]},
                         {"name": "scaledobjects/status", "singularName": "", "namespaced": True,
                          "kind": "ScaledObject", "verbs": ["get", "patch", "update"]}]  # fmt: skip
            return aiohttp.web.json_response({"kind": "APIResourceList", "groupVersion": "keda.sh/v1alpha1",
                                              "resources": resources})  # fmt: skip
        refused = self._authorize(request)
        if refused is not None:
            return refused
        if request.resource is None:
            return await super()._handle(request)
        if request.subresource == "log":
            return self._pod_log(request)
        action = request.action
        if action == kmock.action.CREATE and isinstance(request.data, dict):
            self._stamp(request.data, request.namespace)
            _default(request.resource, request.data)
        elif action == kmock.action.UPDATE and isinstance(request.data, list):
            conflict = await self._failed_json_patch_test(request)
            if conflict:
                return aiohttp.web.json_response(conflict, status=422)
        elif action == kmock.action.UPDATE and request.name and isinstance(request.data, dict):
            key = (request.resource, request.namespace, request.name)
            applying = "apply-patch" in request.headers.get("Content-Type", "")
            async with self._lock:
                exists = key in self._objects and not self._objects[key].deleted
                created = not exists and applying
                if created:
                    obj = copy.deepcopy(request.data)
                    self._stamp(obj, request.namespace)
                    _default(request.resource, obj)
                    if key in self._objects:
                        self._objects[key].create(obj)
                    else:
                        self._objects[key] = obj
                    raw = self._objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
                elif exists:
                    current = self._objects[key].raw
                    merged = patch_dict(copy.deepcopy(current), request.data)
                    if merged == current:  # a no-op patch: no new version, no watch event
                        return aiohttp.web.json_response(current)
                    meta = request.data.setdefault("metadata", {})
                    meta["resourceVersion"] = str(next(self._versions))
                    spec_changed = merged.get("spec") != current.get("spec")
                    if request.subresource is None and spec_changed:
                        meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
            if created:
                await self._collect_if_orphaned(key)
                return aiohttp.web.json_response(raw, status=201)
        key = (request.resource, request.namespace, request.name)
        uid_before = None
        if request.name and key in self._objects and not self._objects[key].deleted:
            uid_before = self._objects[key].raw.get("metadata", {}).get("uid")
        response = await super()._handle(request)
        if action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.get("metadata", {})
            await self._collect_if_orphaned(
                (request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
            )
        # gone now (deleted outright, or its last finalizer removed): collect its dependents
        if uid_before and self._objects[key].deleted:
            await self._collect_garbage(uid_before)
        return response

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        """kmock's list, narrowed by an equality-based labelSelector (k=v,k2=v2) as the API does."""
        payload: dict[str, Any] = await super()._serve_list(request)
        selector = dict(
            part.split("=", 1) for part in (request.params.get("labelSelector") or "").split(",") if "=" in part
        )
        if selector:
            payload["items"] = [
                item
                for item in payload["items"]
                if selector.items() <= (item.get("metadata", {}).get("labels") or {}).items()
            ]
        return payload

    async def _failed_json_patch_test(self, request: kmock.Request) -> dict[str, Any] | None:
        """A JSON patch whose ``test`` op fails is refused with 422, as the API server does
        (kopf tests resourceVersion when it removes finalizers, then re-reads and retries)."""
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            current = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else None
        if current is None:
            return None
        for op in request.data:
            if op.get("op") != "test":
                continue
            node: Any = current
            for part in op["path"].lstrip("/").split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                node = node.get(part) if isinstance(node, dict) else None
            if node != op.get("value"):
                message = f"the server rejected our request: test of {op['path']} failed"
                return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 422,
                        "reason": "Invalid", "message": message}  # fmt: skip
        return None

    async def _collect_if_orphaned(self, key: Any) -> None:
        """An object created with owners that are already gone is deleted, as the real GC does."""
        async with self._lock:
            obj = self._objects[key] if key in self._objects else None  # noqa: SIM401 - no .get()
            if obj is None or obj.deleted:
                return
            owners = {ref.get("uid") for ref in obj.raw.get("metadata", {}).get("ownerReferences", [])}
            if not owners:
                return
            live_uids = {o.raw.get("metadata", {}).get("uid") for o in self._objects.values() if not o.deleted}
            if owners & live_uids:
                return
            raw = obj.raw
            obj.delete()
            await self._buses[key[0]].put({"type": "DELETED", "object": raw})

    async def _collect_garbage(self, owner_uid: str) -> None:
        async with self._lock:
            dependents = [
                (key, obj)
                for key, obj in self._objects.items()
                if not obj.deleted
                and any(ref.get("uid") == owner_uid for ref in obj.raw.get("metadata", {}).get("ownerReferences", []))
            ]
            for (resource, _, _), obj in dependents:
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
        for _, obj in dependents:
            uid = obj.last.raw.get("metadata", {}).get("uid")
            if uid:
                await self._collect_garbage(uid)

    def live(self, resource: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """Name -> current object for one resource ('apps/v1/deployments'), deleted ones left out."""
        wanted = kmock.resource(resource)
        return {
            name: obj.raw
            for (res, ns, name), obj in self._objects.items()
            if res == wanted and not obj.deleted and (namespace is None or ns == namespace)
        }
