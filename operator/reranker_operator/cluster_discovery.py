"""Looking the cluster up (custom metrics served, storage classes, KEDA), at most once per
interval for all Rerankers, keeping what the last lookup found when one fails."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

import httpx

from reranker_operator.cluster import ClusterFacts
from reranker_operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)


@dataclass
class ClusterDiscovery:
    """What the cluster offers (custom metrics served, storage classes, KEDA), looked up at most once
    per ``interval`` for all Rerankers: an adapter or a class added later is seen within a drift
    interval. A failed lookup keeps what the last one found."""

    interval: float
    keda_prometheus: str | None = None  # the operator's default Prometheus for ScaledObjects
    facts: ClusterFacts = field(default_factory=ClusterFacts)
    checked: float = -math.inf
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def current(self, kube: Kube) -> ClusterFacts:
        async with self.lock:  # concurrent reconciles wait for one lookup instead of each making one
            if time.monotonic() - self.checked >= self.interval:
                self.checked = time.monotonic()
                self.facts = await self._lookup(kube)
        return self.facts

    async def _lookup(self, kube: Kube) -> ClusterFacts:
        served, classes, default = self.facts.served_metrics, self.facts.provisioners, self.facts.default_storage_class
        try:
            served = await kube.served_pod_metrics()
        except (KubeError, httpx.HTTPError) as exc:
            logger.warning("custom metrics discovery failed (keeping %s): %s", sorted(served), exc)
        try:
            classes, default = await kube.storage_classes()
        except (KubeError, httpx.HTTPError) as exc:
            logger.warning("listing storage classes failed (keeping %s): %s", sorted(classes), exc)
        keda = self.facts.keda
        try:
            keda = await kube.serves("keda.sh/v1alpha1", "scaledobjects")
        except (KubeError, httpx.HTTPError) as exc:
            logger.warning("KEDA discovery failed (keeping %s): %s", keda, exc)
        return ClusterFacts(served, classes, default, keda, self.keda_prometheus)
