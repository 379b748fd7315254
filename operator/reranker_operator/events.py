"""Events on a Reranker: what ``kubectl describe`` shows, posted once per new problem or scale."""

from __future__ import annotations

import logging
from typing import Any

from reranker_operator import clock
from reranker_operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)


async def post_event(kube: Kube, body: dict[str, Any], reason: str, message: str, kind: str = "Warning") -> None:
    meta = body["metadata"]
    now = clock.stamp()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": kind,
        "source": {"component": "reranker-operator"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create(event)
    except KubeError as exc:  # an Event is best effort; the condition already says it
        logger.warning("could not post event %s: %s", reason, exc)
