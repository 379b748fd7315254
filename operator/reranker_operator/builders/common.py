"""What every child shares: its owner, labels and metadata, and the pod's fixed places and security."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reranker_contract import server_env as env_names
from reranker_operator.models import API_VERSION, KIND

MANAGED_BY = "reranker-operator"

CONTAINER_PORT = 8000

MODEL_CACHE_DIR = "/models"  # where the model cache claim is mounted

# Without a model cache claim: a writable emptyDir for hub downloads and ONNX graphs, away from
# /models, where images keep the models baked into them (a volume there would hide them).
SCRATCH_DIR = "/var/cache/reranker"

POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,  # the model cache claim is writable by the loader, readable by the servers
    "seccompProfile": {"type": "RuntimeDefault"},
}

CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}

API_KEYS_DIR = "/etc/reranker/api-keys"

TLS_DIR = "/etc/reranker/tls"

FLEET_DIR = "/etc/reranker/fleet"

FLEET_SIZE_KEY = "size"

# Variables the operator sets from spec fields; spec.env may not override them.
RESERVED_ENV = env_names.RESERVED

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The Reranker that owns the children: they are garbage-collected with it."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "reranker", "app.kubernetes.io/instance": name}


def labels(name: str, hardware_class: str) -> dict[str, str]:
    return selector_labels(name) | {
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "reranker.dev/hardware-class": hardware_class,
    }


def metadata(owner: Owner, name: str, hardware_class: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, hardware_class),
        "ownerReferences": [owner.reference()],
    }


def loader_labels(name: str, hardware_class: str) -> dict[str, str]:
    """The loader's pods: managed, but outside the Service's and the Deployment's selector."""
    return labels(name, hardware_class) | {"app.kubernetes.io/name": "reranker-loader",
                                           "app.kubernetes.io/component": "model-loader"}  # fmt: skip
