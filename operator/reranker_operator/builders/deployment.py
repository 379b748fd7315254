"""The server Deployment: its pods' environment, volumes, probes, placement and rollout."""

from __future__ import annotations

from typing import Any

from reranker_contract import server_env as env_names
from reranker_contract.health import LIVE_PATH, READY_PATH
from reranker_operator.builders import model_cache
from reranker_operator.builders.common import (
    API_KEYS_DIR,
    CONTAINER_PORT,
    CONTAINER_SECURITY,
    FLEET_DIR,
    FLEET_SIZE_KEY,
    MODEL_CACHE_DIR,
    POD_SECURITY,
    RESERVED_ENV,
    SCRATCH_DIR,
    TLS_DIR,
    Manifest,
    Owner,
    labels,
    metadata,
    selector_labels,
)
from reranker_operator.models import RerankerSpec
from reranker_operator.profiles import HardwareProfile, ProbeTiming


def _probe(path: str, timing: ProbeTiming, scheme: str) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": scheme.upper()},
        "periodSeconds": timing.period_seconds,
        "failureThreshold": timing.failure_threshold,
        "timeoutSeconds": timing.timeout_seconds,
    }


def cache_env(spec: RerankerSpec, default_redis_url: str | None) -> list[dict[str, Any]]:
    """Distributed mode: the Reranker's own Redis, else the operator's default, else none."""
    redis = spec.cache.redis if spec.cache else None
    if redis is None and not default_redis_url:
        return []
    env: list[dict[str, Any]] = [{"name": env_names.ENABLE_DISTRIBUTED, "value": "true"}]
    if redis is not None and redis.url_secret_ref is not None:
        ref = redis.url_secret_ref
        env.append({"name": env_names.REDIS_URL, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    else:
        env.append({"name": env_names.REDIS_URL, "value": (redis.url if redis else None) or default_redis_url})
    if redis is not None and redis.ttl_seconds:
        env.append({"name": env_names.REDIS_TTL_SECONDS, "value": str(redis.ttl_seconds)})
    return env


def server_env(
    owner: Owner, spec: RerankerSpec, profile: HardwareProfile, default_redis_url: str | None = None
) -> list[dict[str, Any]]:
    """Environment of the server container: profile tuning, the shared cache, then the user's extra variables."""
    threads = str(profile.cpu_threads)
    managed = {
        env_names.HOST: "0.0.0.0",
        env_names.PORT: str(CONTAINER_PORT),
        env_names.MODEL_NAME: spec.model.name,
        env_names.DTYPE: profile.dtype,
        env_names.ENGINE: profile.engine,
        env_names.BATCH_SIZE: str(profile.batch_size),
        env_names.MAX_BATCH_TOKENS: str(profile.max_batch_tokens),
        env_names.MAX_PARALLEL_REQUESTS: str(profile.max_parallel_requests),
        env_names.MAX_QUEUE_SIZE: str(profile.max_queue_size),
        env_names.CACHE_SIZE: str(profile.cache_size),
        env_names.API_PROCESSES: str(profile.api_processes),
        env_names.SHUTDOWN_DELAY: "1",  # preStop already waited drain_seconds; fail /ready briefly, then close
        env_names.SHUTDOWN_GRACE: str(profile.shutdown_grace_seconds),
        env_names.HF_HOME: f"{cache_mount(spec)}/hf",
        env_names.TORCH_THREADS: threads,
        env_names.OMP_NUM_THREADS: threads,
        env_names.MKL_NUM_THREADS: threads,
    }
    if spec.model.revision:
        managed[env_names.MODEL_REVISION] = spec.model.revision
    if spec.model.cache is not None:
        managed[env_names.HF_HUB_OFFLINE] = "1"  # the loader filled the claim; never ask the hub
    elif spec.model.hub_endpoint:  # the pods fetch the model themselves, from the mirror
        managed[env_names.HF_ENDPOINT] = spec.model.hub_endpoint
        managed[env_names.HF_HUB_OFFLINE] = "0"
    if spec.auth is not None:
        managed[env_names.API_KEY_FILE] = f"{API_KEYS_DIR}/{spec.auth.api_key_secret_ref.key}"
    managed |= rate_limit_env(owner, spec)
    if spec.tls is not None:
        managed[env_names.TLS_CERT_FILE] = f"{TLS_DIR}/tls.crt"
        managed[env_names.TLS_KEY_FILE] = f"{TLS_DIR}/tls.key"
    if profile.hardware_class == "nvidia-gpu":
        managed[env_names.DEVICE_PREFERENCE] = "cuda"
    user = {var.name: var for var in spec.env}
    env: list[dict[str, Any]] = []
    for name, value in managed.items():
        if name in user and name not in RESERVED_ENV:
            continue  # the user's value replaces the profile's
        env.append({"name": name, "value": value})
    env += cache_env(spec, default_redis_url)
    token = spec.model.token_secret_ref
    if token is not None and spec.model.cache is None:  # with a cache only the loader needs it
        env.append({"name": env_names.HF_TOKEN, "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    for var in spec.env:
        if var.name in RESERVED_ENV:
            continue  # refused by validation; never silently applied
        entry: dict[str, Any] = {"name": var.name}
        if var.value_from is not None:
            entry["valueFrom"] = var.value_from
        else:
            entry["value"] = var.value or ""
        env.append(entry)
    return env


def shares_rate_limits(spec: RerankerSpec) -> bool:
    """Rate limits (the spec's, or keys' own in the key Secret): the pods need the fleet's size."""
    return spec.rate_limits is not None or spec.auth is not None


def fleet_config_map_name(reranker: str) -> str:
    return f"{reranker}-fleet"


def rate_limit_env(owner: Owner, spec: RerankerSpec) -> dict[str, str]:
    if not shares_rate_limits(spec):
        return {}
    env = {env_names.RATE_LIMIT_SCOPE: f"{owner.namespace}/{owner.name}",
           env_names.FLEET_SIZE_FILE: f"{FLEET_DIR}/{FLEET_SIZE_KEY}"}  # fmt: skip
    limits = spec.rate_limits
    for name, value in (
        (env_names.RATE_LIMIT_REQUESTS_PER_SECOND, limits and limits.requests_per_second),
        (env_names.RATE_LIMIT_PAIRS_PER_SECOND, limits and limits.pairs_per_second),
        (env_names.RATE_LIMIT_REQUEST_BURST, limits and limits.request_burst),
        (env_names.RATE_LIMIT_PAIR_BURST, limits and limits.pair_burst),
    ):
        if value is not None:
            env[name] = f"{value:g}"
    return env


def cache_mount(spec: RerankerSpec) -> str:
    """Where the pod's Hugging Face cache lives: the claim's mount, else the scratch directory."""
    return MODEL_CACHE_DIR if spec.model.cache is not None else SCRATCH_DIR


def secret_volumes(owner: Owner, spec: RerankerSpec) -> list[dict[str, Any]]:
    """The API-key and TLS Secrets and the fleet ConfigMap as volumes: the kubelet refreshes them
    in place, so a rotated key (API_KEY_FILE) or a new fleet size reaches the server without a restart."""
    volumes = []
    if shares_rate_limits(spec):  # optional: the pods may start before the operator writes it
        config_map = {"name": fleet_config_map_name(owner.name), "optional": True}
        volumes.append({"name": "fleet", "configMap": config_map})
    if spec.auth is not None:
        volumes.append({"name": "api-keys", "secret": {"secretName": spec.auth.api_key_secret_ref.name}})
    if spec.tls is not None:
        volumes.append({"name": "tls", "secret": {"secretName": spec.tls.secret_name}})
    return volumes


def secret_mounts(spec: RerankerSpec) -> list[dict[str, Any]]:
    mounts = []
    if shares_rate_limits(spec):
        mounts.append({"name": "fleet", "mountPath": FLEET_DIR, "readOnly": True})
    if spec.auth is not None:
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
    if spec.tls is not None:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    return mounts


def _pin_to(node: str) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def deployment(
    owner: Owner,
    spec: RerankerSpec,
    profile: HardwareProfile,
    image: str,
    default_redis_url: str | None = None,
    cache_node: str | None = None,
) -> Manifest:
    """``cache_node``: the node a ReadWriteOnce model cache is attached to (the pods must run there)."""
    resources: dict[str, Any] = {}
    if profile.requests:
        resources["requests"] = profile.requests
    if profile.limits:
        resources["limits"] = profile.limits
    cached = spec.model.cache is not None
    model_volume = (
        model_cache.volume(owner.name, spec.model, read_only=True)
        if cached
        else {"name": "model-cache", "emptyDir": {}}
    )
    pod_spec: dict[str, Any] = {
        "securityContext": POD_SECURITY,
        # drain (readiness fails, listener stays open) + in-flight grace + margin
        "terminationGracePeriodSeconds": profile.drain_seconds + profile.shutdown_grace_seconds + 5,
        "containers": [
            {
                "name": "server",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "env": server_env(owner, spec, profile, default_redis_url),
                "resources": resources,
                "startupProbe": _probe(READY_PATH, profile.startup, spec.scheme),
                "readinessProbe": _probe(READY_PATH, profile.readiness, spec.scheme),
                "livenessProbe": _probe(LIVE_PATH, profile.liveness, spec.scheme),
                # terminating pods leave the Service's endpoints; the sleep lets every proxy see
                # that before SIGTERM, after which the server finishes what it has in flight
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(profile.drain_seconds)]}}},
                "securityContext": CONTAINER_SECURITY,
                # the server writes why it stopped there; a crash with nothing written shows its log's end
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "model-cache", "mountPath": cache_mount(spec)} | ({"readOnly": True} if cached else {}),
                    {"name": "tmp", "mountPath": "/tmp"},
                    *secret_mounts(spec),
                ],
            }
        ],
        "volumes": [model_volume, {"name": "tmp", "emptyDir": {}}, *secret_volumes(owner, spec)],
    }
    if cached:
        pod_spec["initContainers"] = [model_cache.wait_container(spec.model, image, CONTAINER_SECURITY)]
    if profile.node_selector:
        pod_spec["nodeSelector"] = profile.node_selector
    if profile.tolerations:
        pod_spec["tolerations"] = profile.tolerations
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    if cache_node:
        pod_spec["affinity"] = (spec.affinity or {}) | _pin_to(cache_node)
    deploy_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner.name)},
        # never below the ready count: bring a new pod up before taking an old one down
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": labels(owner.name, profile.hardware_class),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(CONTAINER_PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": pod_spec,
        },
    }
    if not spec.autoscaling.enabled:
        deploy_spec["replicas"] = spec.replicas.min  # with autoscaling the engine owns replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, owner.name, profile.hardware_class),
        "spec": deploy_spec,
    }
