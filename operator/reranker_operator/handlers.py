"""kopf handlers: thin wrappers that hand every trigger to ``reconcile``."""

from __future__ import annotations

import logging
from typing import Any

import kopf

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
    memo.kube = Kube.from_environment(SETTINGS.field_manager)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()


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
