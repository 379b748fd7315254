"""kmock's Kubernetes emulator, taught the few API-server behaviours the operator relies on.

kmock stores objects and streams watch events, merging patches as plain dicts. On top of it:
- server-side apply (``application/apply-patch+yaml``) creates a missing object;
- new objects get a uid, creationTimestamp, resourceVersion, generation and the URL's namespace
  (and generateName works);
- a spec change bumps ``metadata.generation``; status patches don't; a no-op patch changes
  nothing and sends no watch event;
- list honours an equality-based labelSelector;
- deleting an owner deletes what names it in ``ownerReferences``, and an object created for an
  owner that is already gone is deleted too (the garbage collector's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kmock._internal.dicts import patch_dict  # the same merge kmock applies to the stored object

# Every kind the operator reads, writes or watches, as discovery lists them.
RESOURCES: dict[str, dict[str, Any]] = {
    "reranker.dev/v1alpha1/rerankers": {"kind": "Reranker", "subresources": {"status"}},
    "reranker.dev/v1alpha1/rerankerendpoints": {"kind": "RerankerEndpoint", "subresources": {"status"}},
    "apps/v1/deployments": {"kind": "Deployment", "subresources": {"status", "scale"}},
    "v1/services": {"kind": "Service", "subresources": {"status"}},
    "autoscaling/v2/horizontalpodautoscalers": {"kind": "HorizontalPodAutoscaler", "subresources": {"status"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "subresources": {"status"}},
    "discovery.k8s.io/v1/endpointslices": {"kind": "EndpointSlice", "subresources": set()},
    "coordination.k8s.io/v1/leases": {"kind": "Lease", "subresources": set()},
    "v1/events": {"kind": "Event", "subresources": set()},
    "v1/namespaces": {"kind": "Namespace", "subresources": set(), "namespaced": False},
}
_VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


@contextlib.asynccontextmanager
async def running_operator(url: str, workdir: Path, settings: dict[str, str]) -> AsyncIterator[tuple[Path, Path]]:
    """A real ``reranker-operator`` process pointed at the emulator at ``url``.

    Yields (kubeconfig, operator log); ``settings`` are its environment variables.
    """
    kubeconfig, log = workdir / "kubeconfig", workdir / "operator.log"
    write_kubeconfig(kubeconfig, url)
    env = os.environ | {"KUBECONFIG": str(kubeconfig), "RERANKER_IMAGE": "reranker-server:test"} | settings
    with log.open("w") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reranker_operator", "--all-namespaces", env=env, stdout=sink, stderr=sink
        )
        try:
            yield kubeconfig, log
        finally:
            proc.terminate()
            await proc.wait()


def write_kubeconfig(path: Any, url: str) -> None:
    """A kubeconfig that points kopf, the operator and registrars at the emulator."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: emu, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: op, user: {token: test-token}}]\n"
        "contexts: [{name: emu, context: {cluster: emu, user: op}}]\ncurrent-context: emu\n"
    )


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
        if request.resource is None:
            return await super()._handle(request)
        action = request.action
        if action == kmock.action.CREATE and isinstance(request.data, dict):
            self._stamp(request.data, request.namespace)
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
