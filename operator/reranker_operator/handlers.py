"""kopf handlers: thin wrappers that hand every trigger to ``reconcile``."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import kopf

from . import external
from .endpoints import Thresholds
from .kube import Kube
from .models import GROUP, PLURAL, VERSION
from .reconcile import reconcile
from .resources import MANAGED_BY
from .settings import OperatorSettings

logger = logging.getLogger(__name__)
SETTINGS = OperatorSettings()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # A Reranker deleted while its drift check or probe runs waits for that run to end: check
    # back in seconds, not kopf's default minute, so deletions aren't held up.
    settings.background.instant_exit_timeout = 1.0
    settings.background.cancellation_polling = 2.0
    memo.kube = Kube.from_environment(SETTINGS.field_manager)
    memo.http = httpx.AsyncClient()  # probes external endpoints' /health


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()
    await memo.http.aclose()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_reranker(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await reconcile(memo.kube, SETTINGS, dict(body))


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.drift_interval, initial_delay=SETTINGS.drift_interval)
async def drift_check(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Puts back children that were deleted or edited by hand, and refreshes status."""
    await reconcile(memo.kube, SETTINGS, dict(body))


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def deployment_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A server Deployment changed (rollout progress, hand edits, deletion): reconcile its owner."""
    obj: dict[str, Any] = dict(event.get("object") or {})
    meta: dict[str, Any] = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Reranker" and ref.get("apiVersion") == f"{GROUP}/{VERSION}":
            owner = await memo.kube.get("Reranker", meta.get("namespace"), ref["name"])
            owner_meta = (owner or {}).get("metadata", {})
            # the same Reranker (not a new one with the name), and not on its way out
            if (
                owner is not None
                and owner_meta.get("uid") == ref.get("uid")
                and not owner_meta.get("deletionTimestamp")
            ):
                await reconcile(memo.kube, SETTINGS, owner)


@kopf.timer(GROUP, VERSION, "rerankerendpoints", interval=SETTINGS.probe_interval, sharp=True)
async def probe_endpoint(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Probe an external endpoint's /health; when that changes its place in rotation, refresh
    its Reranker's EndpointSlices at once (a steady endpoint costs one status patch a probe)."""
    thresholds = Thresholds(SETTINGS.failures_to_drop, SETTINGS.successes_to_rejoin)
    before = external.rotation(dict(body))
    state = await external.probe_endpoint(memo.kube, memo.http, dict(body), thresholds, SETTINGS.probe_timeout)
    if (state.listed, state.ready) != before:
        await _sync_owner_slices(memo.kube, dict(body))


@kopf.on.event(GROUP, VERSION, "rerankerendpoints")
async def endpoint_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Registered, changed or withdrawn: the slices follow at once, not at the next probe."""
    if event.get("type") in ("ADDED", "DELETED"):
        await _sync_owner_slices(memo.kube, dict(event.get("object") or {}))


async def _sync_owner_slices(kube: Kube, endpoint: dict[str, Any]) -> None:
    namespace = endpoint.get("metadata", {}).get("namespace")
    name = (endpoint.get("spec") or {}).get("rerankerRef", {}).get("name")
    reranker = await kube.get("Reranker", namespace, name) if name else None
    if reranker is not None and not reranker["metadata"].get("deletionTimestamp"):
        await external.sync_slices(kube, reranker)
