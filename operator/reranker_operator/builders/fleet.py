"""The fleet's size, told to every server: each divides the rate limits by it while Redis is away.

Pods read it from the ``<name>-fleet`` ConfigMap, mounted (the kubelet refreshes a mounted
ConfigMap on its sync of the volume: a minute or two, docs/design/rate-limits.md); external
machines from their RerankerEndpoint's status, which the probe writes and the machine reads at
each Lease renewal (seconds).
"""

from __future__ import annotations

from typing import Any

from reranker_operator.builders.common import FLEET_SIZE_KEY, Manifest, Owner, metadata
from reranker_operator.builders.deployment import fleet_config_map_name, shares_rate_limits
from reranker_operator.external import endpoints
from reranker_operator.models import RerankerSpec


def size(deployment: dict[str, Any] | None, registered: list[dict[str, Any]]) -> int:
    """Ready server pods plus ready external endpoints; never below one."""
    ready_pods = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    ready_machines = sum(1 for e in registered if (endpoints.rotation(e) or (False, False))[1])
    return max(1, ready_pods + ready_machines)


def config_map(owner: Owner, spec: RerankerSpec, fleet_size: int) -> Manifest | None:
    if not shares_rate_limits(spec):
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, fleet_config_map_name(owner.name), spec.hardware_class),
        "data": {FLEET_SIZE_KEY: str(fleet_size)},
    }
