"""Helpers to validate manifests: built-in kinds against the real Kubernetes schemas, and
custom resources against our CRDs' openAPIV3Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31.0"


def validate_builtin(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def load_crds() -> dict[str, dict[str, Any]]:
    """Kind -> CRD, from the top-level crds/ folder."""
    crds = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def _to_jsonschema(node: Any) -> Any:
    """Drop the Kubernetes extensions (x-kubernetes-*) that jsonschema doesn't know."""
    if isinstance(node, dict):
        return {k: _to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [_to_jsonschema(v) for v in node]
    return node


def validate_custom(resource: dict[str, Any]) -> None:
    crd = load_crds()[resource["kind"]]
    version = next(
        v for v in crd["spec"]["versions"] if f"{crd['spec']['group']}/{v['name']}" == resource["apiVersion"]
    )
    jsonschema.validate(resource, _to_jsonschema(version["schema"]["openAPIV3Schema"]))


def validate_any(manifest: dict[str, Any]) -> None:
    if manifest["apiVersion"].startswith("reranker.dev/"):
        validate_custom(manifest)
    else:
        validate_builtin(manifest)


def desired_children(owner: Any, spec: Any, image: str = "img", **fields: Any) -> dict[tuple[str, str], Any]:
    """What the builders want for ``spec`` (its profile resolved), with ``fields`` of BuildInput over the defaults."""
    from reranker_operator import profiles
    from reranker_operator.builders.children import BuildInput
    from reranker_operator.builders.children import desired_children as build

    fields.setdefault("profile", profiles.resolve(spec))
    return build(BuildInput(owner=owner, spec=spec, image=image, **fields))
