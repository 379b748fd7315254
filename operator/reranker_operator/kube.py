"""The only module that talks to the Kubernetes API (kopf's own watching aside).

Plain REST over httpx (``reranker_contract.kubeconfig``), so every call is explicit: server-side
apply with a field manager, merge patches on the status subresource, and nothing that needs API
discovery. Reads of what exists come from kopf's watch caches, not from here (``handlers``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from reranker_contract.kubeconfig import api_client
from reranker_operator.models import GROUP, VERSION


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


KINDS: dict[str, ResourceType] = {
    "Reranker": ResourceType(GROUP, VERSION, "rerankers"),
    "RerankerEndpoint": ResourceType(GROUP, VERSION, "rerankerendpoints"),
    "Deployment": ResourceType("apps", "v1", "deployments"),
    "Service": ResourceType("", "v1", "services"),
    "ConfigMap": ResourceType("", "v1", "configmaps"),
    "HorizontalPodAutoscaler": ResourceType("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ResourceType("policy", "v1", "poddisruptionbudgets"),
    "EndpointSlice": ResourceType("discovery.k8s.io", "v1", "endpointslices"),
    "NetworkPolicy": ResourceType("networking.k8s.io", "v1", "networkpolicies"),
    "Lease": ResourceType("coordination.k8s.io", "v1", "leases"),
    "PersistentVolumeClaim": ResourceType("", "v1", "persistentvolumeclaims"),
    "Job": ResourceType("batch", "v1", "jobs"),
    "Pod": ResourceType("", "v1", "pods"),
    "ScaledObject": ResourceType("keda.sh", "v1alpha1", "scaledobjects"),
    "StorageClass": ResourceType("storage.k8s.io", "v1", "storageclasses", namespaced=False),
    "Event": ResourceType("", "v1", "events"),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("message") or response.text
    except ValueError:
        message = response.text
    raise KubeError(response.status_code, message)


class Kube:
    def __init__(self, client: httpx.AsyncClient, field_manager: str) -> None:
        self._http = client
        self.field_manager = field_manager

    @classmethod
    def from_environment(cls, field_manager: str, timeout: float = 30.0) -> Kube:
        return cls(api_client(timeout), field_manager)

    async def close(self) -> None:
        await self._http.aclose()

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: we own the fields we send, and take them back from anyone else."""
        rtype = KINDS[manifest["kind"]]
        meta = manifest["metadata"]
        response = await self._http.patch(
            rtype.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": self.field_manager, "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(manifest).encode(),  # JSON is valid YAML
        )
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        response = await self._http.get(KINDS[kind].path(namespace, name))
        if response.status_code == 404:
            return None
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        # Background: a Job's pods go with it (the API's default for Jobs is to orphan them)
        response = await self._http.delete(
            KINDS[kind].path(namespace, name), params={"propagationPolicy": "Background"}
        )
        if response.status_code == 404:
            return False
        _raise_for(response)
        return True

    async def patch_status(self, kind: str, namespace: str | None, name: str, status: dict[str, Any]) -> None:
        response = await self._http.patch(
            KINDS[kind].path(namespace, name, "status"),
            headers={"Content-Type": "application/merge-patch+json"},
            content=json.dumps({"status": status}).encode(),
        )
        _raise_for(response)

    async def served_pod_metrics(self) -> frozenset[str]:
        """Pod metrics the cluster's custom-metrics API (e.g. prometheus-adapter) serves; none without one.

        A discovery read: every authenticated caller may make it (system:discovery)."""
        response = await self._http.get("/apis/custom.metrics.k8s.io/v1beta1")
        if response.status_code in (404, 503):  # no adapter registered, or registered but down
            return frozenset()
        _raise_for(response)
        names = (str(r.get("name", "")) for r in response.json().get("resources") or [])
        return frozenset(n.split("/", 1)[1] for n in names if n.startswith("pods/"))

    async def serves(self, group_version: str, plural: str) -> bool:
        """Does the API server serve ``plural`` in ``group_version`` (e.g. KEDA's scaledobjects)? A discovery read."""
        response = await self._http.get(f"/apis/{group_version}")
        if response.status_code in (404, 503):
            return False
        _raise_for(response)
        return any(r.get("name") == plural for r in response.json().get("resources") or [])

    async def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource, as an HPA does (the applied spec leaves them out)."""
        response = await self._http.patch(
            KINDS[kind].path(namespace, name, "scale"),
            params={"fieldManager": f"{self.field_manager}-autoscaler"},
            headers={"Content-Type": "application/merge-patch+json"},
            content=json.dumps({"spec": {"replicas": replicas}}).encode(),
        )
        _raise_for(response)

    async def storage_classes(self) -> tuple[dict[str, str], str | None]:
        """StorageClass name -> provisioner, and the cluster's default class."""
        response = await self._http.get(KINDS["StorageClass"].path(None))
        _raise_for(response)
        provisioners, default = {}, None
        for item in response.json().get("items") or []:
            meta = item.get("metadata") or {}
            provisioners[meta.get("name", "")] = str(item.get("provisioner", ""))
            if (meta.get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
                default = meta.get("name")
        return provisioners, default

    async def job_log(self, namespace: str, job: str, container: str, tail: int = 50) -> str | None:
        """The end of the log of the Job's newest pod; None while it has none."""
        pods = KINDS["Pod"]
        response = await self._http.get(
            pods.path(namespace), params={"labelSelector": f"batch.kubernetes.io/job-name={job}"}
        )
        _raise_for(response)
        items = sorted(response.json().get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp", ""))
        if not items:
            return None
        name = items[-1]["metadata"]["name"]
        response = await self._http.get(
            pods.path(namespace, name, "log"), params={"container": container, "tailLines": str(tail)}
        )
        if response.status_code in (400, 404):  # the container has not started yet, or the pod is gone
            return None
        _raise_for(response)
        return response.text

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        rtype = KINDS[manifest["kind"]]
        response = await self._http.post(rtype.path(manifest["metadata"].get("namespace")), json=manifest)
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result
