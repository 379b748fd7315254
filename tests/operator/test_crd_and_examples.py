"""The CRD is valid Kubernetes; the examples are valid Rerankers; the RBAC list is complete."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reranker_operator import ownership, rbac
from reranker_operator.kube import KINDS
from tests.operator.manifests import REPO, load_crds, validate_any, validate_builtin, validate_custom


def test_crds_are_valid_and_structural() -> None:
    crds = load_crds()
    assert "Reranker" in crds
    for crd in crds.values():
        validate_builtin(crd)
        version = crd["spec"]["versions"][0]
        assert version["subresources"]["status"] == {}
        assert "status" in version["schema"]["openAPIV3Schema"]["properties"]


def test_reranker_crd_shape() -> None:
    crd = load_crds()["Reranker"]
    assert crd["spec"]["group"] == "reranker.dev" and crd["spec"]["scope"] == "Namespaced"
    assert "rr" in crd["spec"]["names"]["shortNames"]
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Class",
        "Ready",
        "Degraded",
        "Replicas",
        "Load",
        "Cache",
        "Age",
        "Message",
    ]
    wide_only = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) > 0]
    assert wide_only == ["Message"]  # kubectl get rr shows why it is degraded; -o wide the words
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["hardwareClass"]["enum"] == ["cpu", "nvidia-gpu"]


def test_no_category_shadows_a_resource_name() -> None:
    """kubectl resolves a category before a singular: `kubectl get reranker NAME` broke when a
    category was called "reranker" ("you must specify only one resource")."""
    crds = load_crds().values()
    names = {
        name
        for crd in crds
        for name in (crd["spec"]["names"]["singular"], crd["spec"]["names"]["plural"],
                     crd["spec"]["names"]["kind"].lower(), *crd["spec"]["names"].get("shortNames", []))
    }  # fmt: skip
    categories = {c for crd in crds for c in crd["spec"]["names"].get("categories", [])}
    assert not categories & names, categories & names
    assert {"rr", "reranker", "rre", "rerankerendpoint"} <= names


def test_readme_kubectl_lines_name_real_resources() -> None:
    """Every `kubectl get X` in the README names a resource, short name or category we declare."""
    import re

    crds = load_crds().values()
    known = {"pods", "deployments", "services", "svc", "endpointslices", "hpa", "events", "all"}
    for crd in crds:
        n = crd["spec"]["names"]
        known |= {n["singular"], n["plural"], *n.get("shortNames", []), *n.get("categories", [])}
    used = re.findall(r"kubectl get ([a-z.-]+)", (REPO / "README.md").read_text())
    assert used
    assert set(used) <= known, set(used) - known


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            validate_any(doc)


def test_schema_rejects_what_it_should() -> None:
    import jsonschema

    base = {"apiVersion": "reranker.dev/v1alpha1", "kind": "Reranker", "metadata": {"name": "x"}}
    validate_custom(base | {"spec": {"model": {"name": "m"}}})
    validate_custom(base | {"spec": {"model": {"name": "m"}, "server": {"engine": "pytorch", "dtype": "int8"}}})
    for bad in (
        {"model": {}},
        {"model": {"name": "m"}, "hardwareClass": "tpu"},
        {"model": {"name": "m"}, "replicas": {"min": 0}},
        {"model": {"name": "m"}, "server": {"engine": "tensorrt"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom(base | {"spec": bad})


def test_every_example_class_is_covered() -> None:
    classes = set()
    for path in (REPO / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Reranker":
                classes.add(doc["spec"].get("hardwareClass", "cpu"))
    assert classes == {"cpu", "nvidia-gpu"}


def test_rbac_list_covers_every_kind_the_operator_writes() -> None:
    granted = rbac.merged()
    for kind in ownership.OWNED_KINDS:  # cached (list, watch), applied (create, patch), pruned (delete)
        rtype = KINDS[kind]
        assert {"list", "watch", "create", "patch", "delete"} <= granted[(rtype.group, rtype.plural)], kind
    assert "patch" in granted[("reranker.dev", "rerankers/status")]
    assert "create" in granted[("", "events")]
    assert all(rule.purpose in ("framework", "application") for rule in rbac.RULES)
