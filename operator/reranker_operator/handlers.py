"""kopf handlers: watch caches (indexes), and thin handlers that hand every trigger to ``reconcile``.

Steady state costs no API request: Rerankers, their children and their RerankerEndpoints are
held in kopf's indexes (filled by the watches kopf keeps open anyway), a child's change or
deletion reconciles its owner from those caches, and a reconcile that finds everything as
wanted sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import kopf

from reranker_contract.api import ENDPOINT_PLURAL
from reranker_contract.endpoint import EndpointSpec
from reranker_operator import crash_loop, metrics, ownership
from reranker_operator.autoscale import loop as autoscaling
from reranker_operator.builders import model_cache
from reranker_operator.builders.children import ChildKey
from reranker_operator.builders.deployment import fleet_config_map_name
from reranker_operator.cluster import ClusterFacts
from reranker_operator.cluster_discovery import ClusterDiscovery
from reranker_operator.external import status as external
from reranker_operator.external.endpoints import Thresholds
from reranker_operator.kube import KINDS, Kube, KubeError
from reranker_operator.models import GROUP, PLURAL, VERSION, ModelRef
from reranker_operator.reconcile import Observed, reconcile
from reranker_operator.settings import OperatorSettings
from reranker_operator.state import Registry

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
    # kopf hands each object a shallow copy of memo: what all Rerankers share lives in mutable objects
    memo.registry = Registry()  # what this process remembers of each Reranker
    memo.cluster = ClusterDiscovery(SETTINGS.drift_interval, SETTINGS.keda_prometheus_address)
    memo.http = httpx.AsyncClient()  # probes external endpoints' /health
    if SETTINGS.metrics_port:
        metrics.serve(SETTINGS.metrics_port)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()
    await memo.http.aclose()


# --- watch caches ------------------------------------------------------------------------------


def _trimmed(body: kopf.Body) -> dict[str, Any]:
    """The object without managedFields, which nothing here reads and which dominate its size."""
    obj = dict(body)
    obj["metadata"] = {k: v for k, v in body.metadata.items() if k != "managedFields"}
    return obj


@kopf.index(GROUP, VERSION, PLURAL)
def rerankers(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(namespace or "", name): _trimmed(body)}


@kopf.index(GROUP, VERSION, ENDPOINT_PLURAL)
def registered_endpoints(body: kopf.Body, namespace: str | None, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """RerankerEndpoints by the Reranker they join."""
    reranker = EndpointSpec.from_manifest(dict(body)).reranker
    return {(namespace or "", reranker): _trimmed(body)} if reranker else {}


SERVER_POD_LABELS = {**ownership.MANAGED_LABELS, "app.kubernetes.io/component": "server"}


@kopf.index("", "v1", "pods", labels=SERVER_POD_LABELS)
def server_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    """Server pods by their Reranker: what the operator autoscaler reads /metrics from, and whether
    their server keeps crashing."""
    owner = labels.get("app.kubernetes.io/instance")
    if not owner:
        return {}
    # only what is read: a pod's full spec would cost ~10 KiB each in this cache
    pod = {
        "metadata": {"name": body.metadata.name, "deletionTimestamp": body.metadata.get("deletionTimestamp")},
        "spec": {"containers": [{"ports": c.get("ports") or []} for c in body.spec.get("containers") or []]},
        "status": {"podIP": body.status.get("podIP"), "conditions": body.status.get("conditions") or []},
        "server": crash_loop.container_summary({"status": dict(body.status)}),
    }
    return {(namespace or "", owner): pod}


@kopf.on.event("", "v1", "pods", labels=SERVER_POD_LABELS)
async def server_pod_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    """A restart changes no Deployment status: the owner's conditions are refreshed from the pods."""
    owner = labels.get("app.kubernetes.io/instance")
    if owner:
        await _reconcile_cached(memo, kwargs, namespace or "", owner, scope=lambda key: False)


def _index_id(kind: str) -> str:
    return f"owned_{kind.lower()}s"


def _index_child(body: kopf.Body, namespace: str | None, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    owner = ownership.controller_name(dict(body))
    return {(namespace or "", owner): _trimmed(body)} if owner else {}


def _one(index: Mapping[Any, Any], key: tuple[str, str]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = next(iter(index.get(key, ())), None)
    return found


async def _cluster_facts(memo: kopf.Memo) -> ClusterFacts:
    discovery: ClusterDiscovery = memo.cluster
    return await discovery.current(memo.kube)


def _observed(
    indexes: Mapping[str, Any],
    reranker: dict[str, Any],
    cluster: ClusterFacts,
    scope: Callable[[ChildKey], bool] | None = None,
) -> Observed:
    """What the caches hold for ``reranker``."""
    meta = reranker["metadata"]
    key = (meta["namespace"], meta["name"])
    owned = {
        (kind, child["metadata"]["name"]): child
        for kind in ownership.OWNED_KINDS
        for child in indexes[_index_id(kind)].get(key, ())
    }
    return Observed(owned, _registered(indexes, key), scope, cluster, list(indexes["server_pods"].get(key, ())))


def _registered(indexes: Mapping[str, Any], key: tuple[str, str]) -> list[dict[str, Any]]:
    """The RerankerEndpoints naming the Reranker at ``key``, none on their way out."""
    return [e for e in indexes["registered_endpoints"].get(key, ()) if not e["metadata"].get("deletionTimestamp")]


async def _reconcile_cached(
    memo: kopf.Memo,
    indexes: Mapping[str, Any],
    namespace: str,
    name: str,
    scope: Callable[[ChildKey], bool] | None = None,
) -> None:
    """Reconcile a Reranker as the caches hold it; nothing if it is gone or going."""
    reranker = _one(indexes["rerankers"], (namespace, name))
    if reranker is None or reranker["metadata"].get("deletionTimestamp"):
        return
    await _reconcile_one(memo, indexes, reranker, scope)


async def _reconcile_one(
    memo: kopf.Memo,
    indexes: Mapping[str, Any],
    reranker: dict[str, Any],
    scope: Callable[[ChildKey], bool] | None = None,
) -> None:
    """One reconcile of a Reranker at a time: its create handler and its children's first events
    arrive together, and each wrote the same status (measured: ~3.7 status patches per new
    Reranker, 2 with the lock). The one that waited sees what the first wrote and sends nothing."""
    cluster = await _cluster_facts(memo)
    registry: Registry = memo.registry
    state = registry.of(reranker["metadata"].get("uid", ""))
    async with state.lock:
        await reconcile(memo.kube, SETTINGS, reranker, _observed(indexes, reranker, cluster, scope), state)


# --- Rerankers ---------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_reranker(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile_one(memo, kwargs, _trimmed(body))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)  # optional: adds no finalizer of its own
async def forget_reranker(uid: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Its children go with it (owner references); only what this process remembers is left."""
    metrics.forget_reranker(namespace or "", name)
    registry: Registry = memo.registry
    registry.forget(uid)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.drift_interval, initial_delay=SETTINGS.drift_interval)
async def drift_check(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """A safety net for a missed watch event: compares the caches, sends nothing when they agree."""
    await _reconcile_cached(memo, kwargs, namespace or "", name)


def _model_loading(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    cache = status.get("modelCache") or {}
    return bool((spec.get("model") or {}).get("cache")) and cache.get("phase") != "Cached"


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.cache_poll_interval, when=_model_loading)
async def follow_model_load(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """While the loader runs: read its progress from its pod's log into status.modelCache."""
    model = (body.spec.get("model") or {}).get("name")
    revision = (body.spec.get("model") or {}).get("revision")
    if not model:
        return
    job = model_cache.job_name(name, ModelRef(name=model, revision=revision))
    try:
        log = await memo.kube.job_log(namespace or "", job, model_cache.LOADER_CONTAINER)
    except (KubeError, httpx.HTTPError) as exc:
        logger.warning("reading the loader log of %s/%s failed: %s", namespace, name, exc)
        return
    progress = model_cache.last_progress(log or "")
    registry: Registry = memo.registry
    state = registry.of(uid)
    if progress is not None and progress != state.load_progress:
        state.load_progress = progress
        await _reconcile_cached(memo, kwargs, namespace or "", name, scope=lambda key: False)


def _operator_scaled(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("autoscaling") or {}
    return scaling.get("enabled", True) is not False and scaling.get("engine", "operator") == "operator"


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.autoscale_interval, when=_operator_scaled)
async def autoscale(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """The operator engine: read the fleet's load, decide, set the Deployment's replicas."""
    key = (namespace or "", name)
    fleet = autoscaling.Fleet(_trimmed(body), _one(kwargs[_index_id("Deployment")], key),
                              list(kwargs["server_pods"].get(key, ())), _registered(kwargs, key))  # fmt: skip
    registry: Registry = memo.registry
    if await autoscaling.tick(registry.of(uid).autoscaler, memo.kube, memo.http, fleet, SETTINGS):
        await _reconcile_cached(memo, kwargs, namespace or "", name, scope=lambda key: False)


# --- children: a change or deletion by anyone else is put right ----------------------------------


async def child_changed(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """Put this child right if it drifted (or went), and refresh the owner's status."""
    owner = ownership.controller_name(dict(body))
    reranker = _one(kwargs["rerankers"], (namespace or "", owner)) if owner else None
    # the same Reranker (not an older one with the same name whose children the GC hasn't taken)
    if owner and reranker and ownership.owned_by(dict(body), reranker["metadata"].get("uid", "")):
        this = (str(body.get("kind")), name)
        size = ("ConfigMap", fleet_config_map_name(owner))  # follows the Deployment's ready count
        await _reconcile_cached(memo, kwargs, namespace or "", owner, scope=lambda key: key in (this, size))


for _kind in ownership.OWNED_KINDS:
    _type = KINDS[_kind]
    kopf.index(_type.group, _type.version, _type.plural, labels=ownership.MANAGED_LABELS, id=_index_id(_kind))(
        _index_child
    )
    kopf.on.event(_type.group, _type.version, _type.plural, labels=ownership.MANAGED_LABELS, id=f"{_kind}-changed")(
        child_changed
    )


# --- external endpoints --------------------------------------------------------------------------


@kopf.timer(GROUP, VERSION, ENDPOINT_PLURAL, interval=SETTINGS.probe_interval, sharp=True)
async def probe_endpoint(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    """Probe an external endpoint's /health and write the result to its status; the Reranker's
    slices follow through the RerankerEndpoint watch (``endpoint_changed``)."""
    thresholds = Thresholds(SETTINGS.failures_to_drop, SETTINGS.successes_to_rejoin)
    reranker = _one(kwargs["rerankers"], (namespace or "", EndpointSpec.from_manifest(dict(body)).reranker))
    await external.probe_endpoint(memo.kube, memo.http, dict(body), reranker, thresholds, SETTINGS.probe_timeout)


@kopf.on.event(GROUP, VERSION, ENDPOINT_PLURAL)
async def endpoint_changed(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    """Registered, probed, withdrawn: the Reranker's slices and counts follow from the caches."""
    reranker = EndpointSpec.from_manifest(dict(body)).reranker
    if kwargs.get("type") == "DELETED":
        metrics.forget_endpoint(namespace or "", reranker, body["metadata"]["name"])
    if reranker:
        named = (("Service", f"{reranker}-external"), ("ConfigMap", fleet_config_map_name(reranker)))
        await _reconcile_cached(
            memo, kwargs, namespace or "", reranker, scope=lambda key: key[0] == "EndpointSlice" or key in named
        )
