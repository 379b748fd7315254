"""One source per CRD: ``crds/`` and the chart's copy are what the models generate, and the
RerankerEndpoint a registering server writes fits its generated schema."""

from __future__ import annotations

from reranker_contract.endpoint import EndpointSpec
from reranker_contract.endpoint_resource import RerankerEndpointSpec
from reranker_operator import crds
from tests.operator.manifests import REPO


def test_the_crds_are_what_the_models_generate() -> None:
    """Fails when a model or a CRD file was edited without `make crds`."""
    assert crds.main(["--repo", str(REPO), "--check"]) == 0


def test_the_crd_keeps_what_only_kubernetes_knows() -> None:
    import yaml

    reranker = yaml.safe_load(crds.documents()["reranker.dev_rerankers.yaml"])
    version = reranker["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["model"] and spec["x-kubernetes-validations"][0]["fieldPath"] == ".resources"
    assert spec["properties"]["replicas"]["default"] == {} and spec["properties"]["hardwareClass"]["default"] == "cpu"
    assert "default" not in spec["properties"]["env"]  # only what the models mark goes in
    limits = spec["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True
    assert spec["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["rateLimits"]["properties"]["pairBurst"]["minimum"] == 0.001
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Model", "Class", "Ready"]
    assert reranker["spec"]["names"]["shortNames"] == ["rr"]


def test_a_registered_endpoint_fits_the_generated_schema() -> None:
    spec = EndpointSpec(
        "fleet", "10.0.0.5", 8443, "https", capacity=4, lease_name="reranker-endpoint-m", ca_bundle="PEM"
    )
    written = spec.manifest("m", "search")["spec"]
    parsed = RerankerEndpointSpec.model_validate(written)  # every key the registrar writes is in the schema
    assert parsed.model_dump(by_alias=True, exclude_none=True) == written
    assert EndpointSpec.from_manifest({"spec": parsed.model_dump(by_alias=True)}) == spec
