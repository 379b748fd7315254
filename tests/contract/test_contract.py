"""The contract between the server and the operator (``reranker_contract``), checked against both sides."""

from __future__ import annotations

import datetime
from typing import Any

from reranker_contract import server_env
from reranker_contract.api import API_VERSION, ENDPOINT_KIND, ENDPOINT_PLURAL, RERANKER_KIND, RERANKER_PLURAL
from reranker_contract.endpoint import EndpointSpec, lease_expired, lease_manifest
from reranker_contract.health import HealthReport
from reranker_operator import profiles
from reranker_operator.builders import common, deployment
from reranker_operator.models import RerankerSpec
from reranker_server.core.settings import Settings
from tests.operator.manifests import load_crds, validate_builtin, validate_custom


def settings_env_names() -> set[str]:
    return {(field.alias or name).upper() for name, field in Settings.model_fields.items()}


def test_every_server_setting_the_operator_sets_is_a_server_setting() -> None:
    assert settings_env_names() >= server_env.SERVER_SETTINGS, server_env.SERVER_SETTINGS - settings_env_names()
    assert not server_env.LIBRARY_ENV & settings_env_names()


def test_the_operator_sets_only_contract_names() -> None:
    spec = RerankerSpec.model_validate(
        {"model": {"name": "m", "revision": "v1"}, "hardwareClass": "nvidia-gpu",
         "cache": {"redis": {"url": "redis://r:6379/0", "ttlSeconds": 60}},
         "auth": {"apiKeySecretRef": {"name": "keys", "key": "keys"}},
         "rateLimits": {"requestsPerSecond": 5, "pairsPerSecond": 500.5, "requestBurst": 10, "pairBurst": 1000}}
    )  # fmt: skip
    owner = common.Owner("fleet", "search", "uid-1")
    env = deployment.server_env(owner, spec, profiles.resolve(spec))
    names = {e["name"] for e in env}
    assert names <= server_env.SERVER_SETTINGS | server_env.LIBRARY_ENV, names - server_env.SERVER_SETTINGS
    # and every value the operator sets parses as the server's setting
    values = {e["name"].lower(): e["value"] for e in env if e["name"] in server_env.SERVER_SETTINGS}
    assert values.pop("api_key_file") == "/etc/reranker/api-keys/keys"  # a path in the pod, not here
    settings = Settings(**values)
    assert (settings.model_name, settings.model_revision, settings.device_preference) == ("m", "v1", "cuda")
    assert settings.enable_distributed and settings.redis_url == "redis://r:6379/0"
    assert (settings.rate_limit_requests_per_second, settings.rate_limit_pairs_per_second,
            settings.rate_limit_request_burst, settings.rate_limit_pair_burst) == (5, 500.5, 10, 1000)  # fmt: skip
    assert settings.rate_limit_scope == "search/fleet" and settings.fleet_size_file is not None


def test_reserved_names_are_contract_names() -> None:
    assert server_env.RESERVED <= server_env.SERVER_SETTINGS | server_env.LIBRARY_ENV


def test_api_names_match_the_crds() -> None:
    crds = load_crds()
    for kind, plural in ((RERANKER_KIND, RERANKER_PLURAL), (ENDPOINT_KIND, ENDPOINT_PLURAL)):
        crd = crds[kind]
        assert crd["spec"]["names"]["plural"] == plural
        assert f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}" == API_VERSION


def test_endpoint_manifest_round_trips_and_validates() -> None:
    spec = EndpointSpec(reranker="fleet", address="10.0.0.5", port=8001, capacity=4, lease_name="mini-1")
    manifest = spec.manifest("mini-1", "search")
    validate_custom(manifest)
    assert EndpointSpec.from_manifest(manifest) == spec
    # a hand-written one with only the required fields reads with the CRD's defaults
    bare = EndpointSpec.from_manifest({"spec": {"rerankerRef": {"name": "fleet"}, "address": "mac.lan"}})
    assert (bare.port, bare.scheme, bare.lease_name) == (8000, "http", None)


def test_lease_manifest_validates_and_expires() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    lease = lease_manifest("mini-1", "search", "mac/10.0.0.5:8000", 30, now)
    validate_builtin(lease)
    assert not lease_expired(lease, now + datetime.timedelta(seconds=29))
    assert lease_expired(lease, now + datetime.timedelta(seconds=31))


def test_health_keys_the_probe_reads_are_what_the_server_writes(minilm_cross_model: Any) -> None:
    from tests.server.helpers import app_client

    with app_client(minilm_cross_model) as client:
        body = client.get("/health").json()
    report = HealthReport.from_body(body)
    assert report.healthy
    assert report.model == minilm_cross_model.checkpoint.model_id
    assert (report.backend, report.device) == ("onnxruntime", "cpu")
    assert HealthReport.from_body(report.body()) == report
    assert HealthReport.from_body("not a dict").status is None
