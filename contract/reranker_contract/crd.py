"""CustomResourceDefinitions generated from pydantic models, kubebuilder-style.

The schema of a kind is its models' JSON schema made structural (Kubernetes' subset of OpenAPI):
references inlined, ``X | None`` as an optional ``X``, ``dict[str, Any]`` as preserved unknown
fields. What only Kubernetes knows lives beside the fields in ``json_schema_extra``: CEL rules
(``x-kubernetes-validations``), list and int-or-string markers, and ``CRD_DEFAULT``, which puts a
field's default into the CRD (the API server then fills it in). Printer columns, names and
categories are the kind's ``CrdInfo``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .api import GROUP, VERSION

CRD_DEFAULT = "x-crd-default"  # True: the field's default goes into the CRD; any other value: that value
_KUBERNETES_KEYS = (
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
)
_KEPT = ("format", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems")


class StatusCondition(BaseModel):
    """One of a resource's conditions, as Kubernetes writes them."""

    model_config = ConfigDict(populate_by_name=True)

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = Field(None, alias="observedGeneration")
    last_transition_time: datetime.datetime | None = Field(None, alias="lastTransitionTime")


# A status's conditions: a list keyed by type, as server-side apply and kubectl merge them.
CONDITIONS_LIST: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


def rules(*pairs: tuple[str, str], field_path: str | None = None) -> dict[str, Any]:
    """``json_schema_extra`` with CEL rules: (rule, message) pairs."""
    validations = [{"rule": rule, "message": message} | ({"fieldPath": field_path} if field_path else {})
                   for rule, message in pairs]  # fmt: skip
    return {"x-kubernetes-validations": validations}


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The model's schema as Kubernetes takes it in a CRD."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(schema, schema.get("$defs", {}))


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``$ref``, ``allOf`` of one and ``X | None``, as one schema; the node's own keys win."""
    own = {k: v for k, v in node.items() if k not in ("$ref", "allOf", "anyOf")}
    if "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs) | own
    if "allOf" in node and len(node["allOf"]) == 1:
        return _resolve(node["allOf"][0], defs) | own
    if "anyOf" in node:
        choices = [c for c in node["anyOf"] if c.get("type") != "null"]
        if len(choices) == 1:
            return _resolve(choices[0], defs) | own
        return own | {"anyOf": [_resolve(c, defs) for c in choices]}
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    if "anyOf" in node:  # int | str: a Kubernetes quantity
        out["anyOf"] = [{"type": c["type"]} for c in node["anyOf"]]
        out["x-kubernetes-int-or-string"] = True
    elif "const" in node:
        out["type"] = node.get("type", "string")
        out["enum"] = [node["const"]]
    elif "type" in node:
        out["type"] = node["type"]
    elif "properties" in node:
        out["type"] = "object"
    if node.get("required"):
        out["required"] = list(node["required"])
    if "description" in node:
        out["description"] = " ".join(str(node["description"]).split())
    marker = node.get(CRD_DEFAULT)
    if marker is not None and marker is not False:
        out["default"] = node.get("default") if marker is True else marker
    for key in _KEPT:
        if key in node:
            out[key] = node[key]
    if "exclusiveMinimum" in node:  # OpenAPI v3.0: a boolean beside the minimum
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    for key in _KUBERNETES_KEYS:
        if key in node:
            out[key] = node[key]
    if out.get("type") == "object":
        if "properties" in node:
            out["properties"] = {name: _convert(sub, defs) for name, sub in node["properties"].items()}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = _convert(extra, defs)
        elif "properties" not in node and (extra is True or extra == {} or extra is None):
            out["x-kubernetes-preserve-unknown-fields"] = True  # dict[str, Any]: kept as written
    if out.get("type") == "array" and "items" in node:
        out["items"] = _convert(node["items"], defs)
    return out


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str | None = None
    priority: int | None = None

    def render(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.priority is not None:
            column["priority"] = self.priority
        if self.description:
            column["description"] = self.description
        return column | {"jsonPath": self.json_path}


def condition_column(kind: str, field: str) -> str:
    """A printer column's path to one field of the condition of type ``kind``."""
    return f'.status.conditions[?(@.type=="{kind}")].{field}'


@dataclass(frozen=True)
class CrdInfo:
    kind: str
    plural: str
    description: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)


def crd(info: CrdInfo, spec: type[BaseModel], status: type[BaseModel]) -> dict[str, Any]:
    """The CustomResourceDefinition of ``info.kind``: one served and stored version with a status subresource."""
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.kind.lower(),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    root = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(spec),
            "status": structural(status),
        },
    }
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": [c.render() for c in info.columns],
        "schema": {"openAPIV3Schema": root},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced", "names": names, "versions": [version]},
    }
