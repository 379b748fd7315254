"""External endpoints (Mac minis): pure logic for addresses, probe hysteresis and EndpointSlices.

An endpoint is in one of three situations:
- refused (bad address, another model, expired Lease): never listed in a slice;
- listed and ready: N failed probes in a row take it out of rotation (ready=false);
- listed and not ready: M good probes in a row bring it back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from reranker_contract.endpoint import EndpointSpec
from reranker_operator.builders.common import MANAGED_BY, Owner, labels

# EndpointSlice's managed-by label: the built-in controller leaves slices labelled otherwise alone.
SLICE_MANAGER = f"{MANAGED_BY}.reranker.dev"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
REFUSING_REASONS = frozenset({"InvalidAddress", "ModelMismatch", "LeaseExpired", "RerankerNotFound", "SchemeMismatch"})


@dataclass(frozen=True)
class Thresholds:
    failures_to_drop: int = 2
    successes_to_rejoin: int = 2


@dataclass(frozen=True)
class ProbeResult:
    ok: bool  # HTTP 200 with status "healthy"
    latency_ms: float | None = None
    model: str | None = None
    revision: str | None = None
    backend: str | None = None
    device: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class EndpointState:
    ready: bool
    reason: str
    message: str
    failures: int
    successes: int

    @property
    def listed(self) -> bool:
        return self.reason not in REFUSING_REASONS


def address_type(address: str) -> str:
    """IPv4, IPv6 or FQDN, as an EndpointSlice needs; ValueError for what a slice may not hold."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        name = address.rstrip(".").lower()
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise ValueError(f"{address!r} is neither an IP address nor a DNS name") from None
        if name == "localhost" or name.endswith(".localhost"):
            raise ValueError(f"{address!r} is a loopback name; the cluster can't reach it") from None
        return "FQDN"
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"{address} is a loopback, link-local, unspecified or multicast address")
    return "IPv4" if ip.version == 4 else "IPv6"


def evaluate(
    previous: dict[str, Any],
    probe: ProbeResult,
    expected_model: str,
    expected_revision: str | None,
    thresholds: Thresholds,
) -> EndpointState:
    """The endpoint's next state from its last status and this probe (hysteresis both ways)."""
    was_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous.get("conditions") or [])
    failures = int(previous.get("consecutiveFailures") or 0)
    successes = int(previous.get("consecutiveSuccesses") or 0)
    if probe.ok and probe.model is not None and probe.model != expected_model:
        return EndpointState(
            False, "ModelMismatch", f"serves {probe.model!r}, the Reranker serves {expected_model!r}", 0, 0
        )
    if probe.ok and expected_revision and probe.revision != expected_revision:
        return EndpointState(
            False,
            "ModelMismatch",
            f"serves revision {probe.revision!r}, the Reranker wants {expected_revision!r}",
            0,
            0,
        )
    if not probe.ok:
        failures, successes = failures + 1, 0
        if was_ready and failures < thresholds.failures_to_drop:
            return EndpointState(True, "ProbeFailing", f"{failures} failed probe(s): {probe.error}", failures, 0)
        return EndpointState(False, "ProbeFailed", f"{failures} failed probe(s): {probe.error}", failures, 0)
    failures, successes = 0, successes + 1
    if not was_ready and successes < thresholds.successes_to_rejoin:
        return EndpointState(
            False, "Joining", f"{successes}/{thresholds.successes_to_rejoin} good probes", 0, successes
        )
    return EndpointState(True, "Healthy", f"{probe.latency_ms or 0:.0f} ms", 0, successes)


def refused(reason: str, message: str) -> EndpointState:
    return EndpointState(False, reason, message, 0, 0)


def _ready_condition(endpoint: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (endpoint.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def rotation(endpoint: dict[str, Any]) -> tuple[bool, bool] | None:
    """(listed in slices, ready) as the endpoint's status says now; None before its first probe."""
    ready = _ready_condition(endpoint)
    if ready is None:
        return None
    return ready.get("reason") not in REFUSING_REASONS, ready.get("status") == "True"


@dataclass(frozen=True)
class SliceMember:
    name: str  # the RerankerEndpoint's name
    address: str
    address_type: str
    port: int
    ready: bool


def slice_member(endpoint: dict[str, Any], scheme: str = "http") -> SliceMember | None:
    """A RerankerEndpoint as a slice member, or None when it is refused, not probed yet, or
    speaks another scheme than the fleet's pods (a Service's clients use one)."""
    placed = rotation(endpoint)
    spec = EndpointSpec.from_manifest(endpoint)
    if placed is None or not placed[0] or spec.scheme != scheme:
        return None
    try:
        kind = address_type(spec.address)
    except ValueError:
        return None
    return SliceMember(endpoint["metadata"]["name"], spec.address, kind, spec.port, ready=placed[1])


def _slice_name(service: str, address_type: str, port: int) -> str:
    return f"{service}-ext-{address_type.lower()}-{port}"[:63].rstrip("-")


def endpoint_slices(owner: Owner, service: str, members: list[SliceMember]) -> list[dict[str, Any]]:
    """One slice per (address type, port) for ``service``; each endpoint's ready condition set."""
    groups: dict[tuple[str, int], list[SliceMember]] = {}
    for member in members:
        groups.setdefault((member.address_type, member.port), []).append(member)
    slices = []
    for (kind, port), group in sorted(groups.items()):
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": _slice_name(service, kind, port),
                    "namespace": owner.namespace,
                    "labels": labels(owner.name, "apple-silicon")
                    | {
                        "kubernetes.io/service-name": service,
                        "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                    },
                    "ownerReferences": [owner.reference()],
                },
                "addressType": kind,
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [m.address],
                        "conditions": {"ready": m.ready, "serving": m.ready, "terminating": False},
                        "targetRef": {"kind": "RerankerEndpoint", "namespace": owner.namespace, "name": m.name},
                    }
                    for m in sorted(group, key=lambda m: m.name)
                ],
            }
        )
    return slices


def external_service(owner: Owner, port: int) -> dict[str, Any]:
    """``<name>-external``: the Macs alone, with no selector (its slices are ours)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{owner.name}-external",
            "namespace": owner.namespace,
            "labels": labels(owner.name, "apple-silicon"),
            "ownerReferences": [owner.reference()],
        },
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }
