"""The fleet's size and its ConfigMap, as pure functions; the operator's default rate limits."""

from __future__ import annotations

from typing import Any

from reranker_operator.builders import fleet
from reranker_operator.builders.common import Owner
from reranker_operator.models import RateLimits, RerankerSpec, with_rate_limits
from reranker_operator.settings import OperatorSettings

OWNER = Owner("fleet", "search", "uid-1")


def endpoint(ready: str, reason: str = "Healthy") -> dict[str, Any]:
    return {"metadata": {"name": "m"}, "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason}]}}


def test_the_size_counts_ready_pods_and_ready_endpoints_and_never_falls_below_one() -> None:
    deployment = {"status": {"replicas": 3, "readyReplicas": 2}}
    assert fleet.size(deployment, [endpoint("True"), endpoint("False"), {"metadata": {"name": "new"}}]) == 3
    assert fleet.size(None, []) == 1


def test_the_configmap_exists_only_where_rate_limits_can_apply() -> None:
    plain = RerankerSpec.model_validate({"model": {"name": "m"}})
    assert fleet.config_map(OWNER, plain, 4) is None
    auth = {"apiKeySecretRef": {"name": "k", "key": "k"}}
    keyed = RerankerSpec.model_validate({"model": {"name": "m"}, "auth": auth})
    manifest = fleet.config_map(OWNER, keyed, 4)  # keys may carry their own limits
    assert manifest is not None and manifest["data"] == {"size": "4"}
    assert manifest["metadata"]["name"] == "fleet-fleet"
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_the_operators_default_limits_apply_where_a_reranker_sets_none(monkeypatch: Any) -> None:
    monkeypatch.setenv("DEFAULT_RATE_LIMITS", '{"requestsPerSecond": 10, "pairBurst": 500}')
    default = OperatorSettings().default_rate_limits
    assert default == RateLimits(requests_per_second=10, pair_burst=500)
    plain = RerankerSpec.model_validate({"model": {"name": "m"}})
    own = RerankerSpec.model_validate({"model": {"name": "m"}, "rateLimits": {"pairsPerSecond": 5}})
    assert with_rate_limits(plain, default).rate_limits == default
    assert with_rate_limits(own, default).rate_limits == RateLimits(pairs_per_second=5)
