"""What a Reranker owns: which kinds, how to tell its children apart, and what to apply and prune.

Pure: the reconcile hands in the children it wants (``builders``) and what the watch caches
hold, and gets back the manifests to apply and the children to delete. Every child carries the Reranker as
its controlling owner reference (the garbage collector removes them with it) and the
``managed-by`` label the operator's watches select on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reranker_contract.api import API_VERSION, RERANKER_KIND
from reranker_operator.builders.children import ChildKey
from reranker_operator.builders.common import MANAGED_BY, Manifest
from reranker_operator.external import endpoints

# Every kind a Reranker may own. The operator watches each (labels: MANAGED_LABELS) into a cache.
OWNED_KINDS: tuple[str, ...] = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                "NetworkPolicy", "EndpointSlice", "PersistentVolumeClaim", "Job",
                                "ScaledObject", "ConfigMap")  # fmt: skip
# Created once and then left alone: a Job's template and most of a claim's spec are immutable
# (an apply that changes them is refused), and a new model gets a new claim and Job by name.
CREATE_ONLY_KINDS = frozenset({"PersistentVolumeClaim", "Job"})
MANAGED_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
__all__ = ["ChildKey", "Plan", "plan"]


def controller_name(child: dict[str, Any]) -> str | None:
    """The name of the Reranker that controls ``child``, if one does."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == RERANKER_KIND and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("name"))
    return None


def owned_by(child: dict[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in (child.get("metadata") or {}).get("ownerReferences") or [])


def endpoint_counts(registered: list[dict[str, Any]]) -> dict[str, int]:
    """status.externalEndpoints: how many are registered, and how many serve now."""
    ready = sum(1 for e in registered if endpoints.rotation(e) == (True, True))
    return {"ready": ready, "total": len(registered)}


@dataclass(frozen=True)
class Plan:
    apply: list[Manifest]  # missing, or differing from what we want
    delete: list[ChildKey]  # ours, and no longer wanted


def plan(
    desired: dict[ChildKey, Manifest],
    live: dict[ChildKey, dict[str, Any]],
    owner_uid: str,
    scope: Callable[[ChildKey], bool] | None = None,
) -> Plan:
    """What to send so that ``live`` becomes ``desired`` (within ``scope``): nothing when they agree."""
    apply = [
        m
        for key, m in desired.items()
        if key not in live or (key[0] not in CREATE_ONLY_KINDS and not contains(live[key], m))
    ]
    delete = [key for key, child in live.items() if key not in desired and owned_by(child, owner_uid)]
    if scope is not None:
        apply = [m for m in apply if scope((m["kind"], m["metadata"]["name"]))]
        delete = [key for key in delete if scope(key)]
    return Plan(apply, delete)


def _empty(value: Any) -> bool:
    # the API server drops empty strings, maps and lists it is sent (Go's omitempty)
    return value in ("", None) or value == {} or value == []


def _same_quantity(live: Any, desired: Any) -> bool:
    """'1000m' and '1', '1Gi' and '1024Mi': the API server stores quantities in canonical form."""
    if not isinstance(live, str | int | float) or not isinstance(desired, str | int | float):
        return False
    from kubernetes.utils import parse_quantity

    try:
        return bool(parse_quantity(live) == parse_quantity(desired))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        return False


def contains(live: Any, desired: Any) -> bool:
    """Does ``live`` hold every field ``desired`` sets, with the same value?

    The API server adds defaults (a container's terminationMessagePath, a Service's clusterIP)
    and others' fields; those don't count as drift. Lists must match element by element.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(contains(live[k], v) if k in live else _empty(v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if live == desired and type(live) is type(desired):
        return True
    return _same_quantity(live, desired) and not isinstance(desired, bool)
