"""External endpoints: addresses, probe hysteresis, EndpointSlices (pure), validated manifests."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from reranker_contract.endpoint import lease_expired
from reranker_operator.builders.common import Owner
from reranker_operator.external import endpoints
from reranker_operator.external.endpoints import ProbeResult, Thresholds
from tests.operator.manifests import validate_builtin, validate_custom

OWNER = Owner(name="fleet", namespace="search", uid="u-1")
MODEL = "BAAI/bge-reranker-base"
GOOD = ProbeResult(ok=True, latency_ms=12.0, model=MODEL, backend="mlx", device="mlx:gpu")
DOWN = ProbeResult(ok=False, error="ConnectError: refused")


@pytest.mark.parametrize(
    ("address", "kind"),
    [("10.1.2.3", "IPv4"), ("192.168.1.20", "IPv4"), ("fd00::5", "IPv6"), ("mac-mini-1.lan", "FQDN")],
)
def test_address_types(address: str, kind: str) -> None:
    assert endpoints.address_type(address) == kind


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "169.254.1.1", "0.0.0.0", "localhost", "Not A Host!", ""])
def test_addresses_a_slice_may_not_hold(address: str) -> None:
    with pytest.raises(ValueError):
        endpoints.address_type(address)


def status_of(state: endpoints.EndpointState) -> dict[str, Any]:
    return {
        "conditions": [{"type": "Ready", "status": "True" if state.ready else "False", "reason": state.reason}],
        "consecutiveFailures": state.failures,
        "consecutiveSuccesses": state.successes,
    }


def run(probes: list[ProbeResult]) -> list[endpoints.EndpointState]:
    thresholds = Thresholds(failures_to_drop=2, successes_to_rejoin=2)
    status: dict[str, Any] = {}
    states = []
    for probe in probes:
        state = endpoints.evaluate(status, probe, MODEL, None, thresholds)
        states.append(state)
        status = status_of(state)
    return states


def test_hysteresis_both_ways() -> None:
    states = run([GOOD, GOOD, DOWN, GOOD, DOWN, DOWN, GOOD, GOOD, GOOD])
    assert [s.ready for s in states] == [False, True, True, True, True, False, False, True, True]
    assert [s.reason for s in states][:3] == ["Joining", "Healthy", "ProbeFailing"]
    assert states[5].reason == "ProbeFailed" and states[5].failures == 2
    assert all(s.listed for s in states)


def test_another_model_is_refused_at_once_with_the_reason() -> None:
    wrong = ProbeResult(ok=True, latency_ms=5, model="sentence-transformers/all-MiniLM-L6-v2")
    state = run([GOOD, GOOD, wrong])[-1]
    assert (state.ready, state.reason, state.listed) == (False, "ModelMismatch", False)
    assert "all-MiniLM-L6-v2" in state.message and MODEL in state.message
    revision = endpoints.evaluate({}, GOOD, MODEL, "v2", Thresholds())
    assert revision.reason == "ModelMismatch"


def test_lease_expiry() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=datetime.UTC)
    fresh = {"spec": {"renewTime": "2026-01-01T12:00:10.000000Z", "leaseDurationSeconds": 30}}
    stale = {"spec": {"renewTime": "2026-01-01T11:59:00.000000Z", "leaseDurationSeconds": 30}}
    assert not lease_expired(fresh, now)
    assert lease_expired(stale, now)
    assert lease_expired(None, now)


def test_slices_group_by_address_type_and_port_and_validate() -> None:
    members = [
        endpoints.SliceMember("mini-1", "10.0.0.5", "IPv4", 8000, True),
        endpoints.SliceMember("mini-2", "10.0.0.6", "IPv4", 8000, False),
        endpoints.SliceMember("mini-3", "fd00::7", "IPv6", 8000, True),
        endpoints.SliceMember("mini-4", "mini-4.lan", "FQDN", 9000, True),
    ]
    slices = endpoints.endpoint_slices(OWNER, "fleet", members)
    assert [(s["addressType"], s["ports"][0]["port"], len(s["endpoints"])) for s in slices] == [
        ("FQDN", 9000, 1),
        ("IPv4", 8000, 2),
        ("IPv6", 8000, 1),
    ]
    for s in slices:
        validate_builtin(s)
        assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "fleet"
        assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == endpoints.SLICE_MANAGER
        assert s["ports"][0]["name"] == "http"  # matches the Service's port name
    ipv4 = slices[1]["endpoints"]
    assert [e["conditions"]["ready"] for e in ipv4] == [True, False]
    service = endpoints.external_service(OWNER, 8000)
    validate_builtin(service)
    assert service["metadata"]["name"] == "fleet-external" and "selector" not in service["spec"]


def test_endpoint_example_validates_against_the_crd() -> None:
    validate_custom(
        {
            "apiVersion": "reranker.dev/v1alpha1",
            "kind": "RerankerEndpoint",
            "metadata": {"name": "mini-1", "namespace": "search"},
            "spec": {"rerankerRef": {"name": "fleet"}, "address": "10.0.0.5", "port": 8000},
        }
    )
