"""The CRDs as a real API server judges them: CEL rules on defaults, examples and a table of specs
(evaluated with cel-python), defaults valid against their own schemas, structural schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.operator import cel
from tests.operator.manifests import REPO, _to_jsonschema, load_crds


def schema_of(kind: str) -> cel.Schema:
    schema: cel.Schema = load_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


KINDS = sorted(load_crds())


@pytest.mark.parametrize("kind", KINDS)
def test_every_rule_compiles(kind: str) -> None:
    rules = cel.compile_all(schema_of(kind))
    if kind == "Reranker":
        assert len(rules) >= 3


@pytest.mark.parametrize("kind", KINDS)
def test_rules_hold_on_every_default(kind: str) -> None:
    """What `kubectl apply -f crds/` failed on: `default: {}` meets `self.min <= self.max`."""
    assert cel.default_failures(schema_of(kind)) == []


def test_the_old_replicas_rule_is_caught() -> None:
    """The harness finds the fault a real API server found (so a green run means something)."""
    schema = schema_of("Reranker")
    replicas = schema["properties"]["spec"]["properties"]["replicas"]
    broken = replicas | {"x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "m"}]}
    found = cel.default_failures(broken)
    assert found and "no such member" in found[0].message


@pytest.mark.parametrize("kind", KINDS)
def test_every_default_validates_against_its_own_schema(kind: str) -> None:
    for _, node in cel.walk(schema_of(kind)):
        if "default" in node:
            jsonschema.validate(node["default"], _to_jsonschema(node))


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_structural(kind: str) -> None:
    assert cel.structural_problems(schema_of(kind)) == []


def test_structural_check_finds_a_typeless_node() -> None:
    assert cel.structural_problems({"type": "object", "properties": {"x": {"description": "no type"}}})


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_every_rule(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["apiVersion"].startswith("reranker.dev/"):
            assert cel.admit(schema_of(doc["kind"]), doc) == [], doc["metadata"]["name"]


def reranker(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "reranker.dev/v1alpha1", "kind": "Reranker", "metadata": {"name": "r"}, "spec": spec}


M = {"model": {"name": "m"}}
GPU = {"nvidia.com/gpu": 1}


@pytest.mark.parametrize(
    ("spec", "refused_by"),
    [
        (M, None),
        (M | {"replicas": {"min": 2, "max": 5}}, None),
        (M | {"replicas": {"min": 3}}, None),  # max defaults to 3
        (M | {"replicas": {"min": 4, "max": 2}}, "replicas.min must not exceed replicas.max"),
        (M | {"replicas": {"min": 4}}, "replicas.min must not exceed replicas.max"),  # defaulted max 3
        (M | {"hardwareClass": "nvidia-gpu"}, None),  # the profile brings the GPU
        (M | {"hardwareClass": "nvidia-gpu", "resources": {"limits": {"cpu": "4"}}}, "nvidia-gpu class needs"),
        (M | {"hardwareClass": "nvidia-gpu", "resources": {"requests": {"cpu": 2}}}, "nvidia-gpu class needs"),
        (M | {"hardwareClass": "nvidia-gpu", "resources": {"limits": GPU}}, None),
        (M | {"resources": {"limits": {"cpu": "4"}}}, None),  # cpu class: no GPU needed
        (M | {"server": {"engine": "onnxruntime", "dtype": "int8"}}, None),
        (M | {"cache": {"redis": {"url": "redis://r:6379/0"}}}, None),
        (M | {"cache": {"redis": {"urlSecretRef": {"name": "s", "key": "url"}}}}, None),
        (M | {"cache": {"redis": {}}}, "exactly one of url and urlSecretRef"),
        (M | {"cache": {"redis": {"url": "redis://r", "urlSecretRef": {"name": "s", "key": "k"}}}}, "exactly one"),
        ({"model": {"name": "m", "cache": {"pvc": {"size": "20Gi"}}}}, None),
        ({"model": {"name": "m", "cache": {"pvc": {"existingClaim": "models"}}}}, None),
        ({"model": {"name": "m", "cache": {"pvc": {"existingClaim": "models", "create": False}}}}, None),
        ({"model": {"name": "m", "cache": {"pvc": {}}}}, "size is required"),
        ({"model": {"name": "m", "cache": {"pvc": {"size": "1Gi", "create": False}}}}, "existingClaim must name"),
    ],
)
def test_reranker_rules(spec: dict[str, Any], refused_by: str | None) -> None:
    found = cel.admit(schema_of("Reranker"), reranker(spec))
    if refused_by is None:
        assert found == []
    else:
        assert len(found) == 1 and refused_by in found[0].message, found


def test_operator_model_agrees_with_the_rules() -> None:
    """What CEL refuses, the operator's own check refuses too (for API servers without the CRD's rules)."""
    from reranker_operator.validation import validate

    for spec in ({"replicas": {"min": 4}}, {"cache": {"redis": {}}},
                 {"hardwareClass": "nvidia-gpu", "resources": {"limits": {"cpu": "4"}}},
                 {"model": {"name": "m", "cache": {"pvc": {}}}},
                 {"model": {"name": "m", "cache": {"pvc": {"size": "1Gi", "create": False}}}}):  # fmt: skip
        _, problems = validate(M | spec, "img")
        assert problems, spec
