"""The Helm chart, rendered by a real helm binary and checked against the Kubernetes schemas."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from reranker_operator import rbac
from tests.operator.manifests import REPO, validate_any

CHART = REPO / "charts" / "reranker"
NON_DEFAULT = [
    "--set", "operator.watchNamespace=search",
    "--set", "serviceMonitor.enabled=true",
    "--set", "serviceMonitor.labels.release=prom",
    "--set", "sampleReranker.enabled=true",
    "--set", "serviceAccount.name=custom-sa",
    "--set", "operator.verbose=true",
    "--set", "server.image.repository=registry.example/reranker-server",
    "--set", "server.image.tag=1.2.3",
    "--set", "fullnameOverride=rr",
    "--set", "cache.redisUrl=redis://redis.cache:6379/0",
    "--set", "autoscaling.keda.prometheusAddress=http://prometheus.monitoring:9090",
    "--set", "rateLimits.requestsPerSecond=20", "--set", "rateLimits.pairBurst=4000",
    "--set", "dashboard.enabled=true", "--set", "dashboard.namespace=monitoring",
    "--set", "operator.metricsPort=9102",
]  # fmt: skip


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("helm") or "helm", *args], capture_output=True, text=True)


def render(*values: str) -> list[dict[str, Any]]:
    result = helm("template", "rel", str(CHART), "--namespace", "ops", *values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_chart_crds_are_the_top_level_crds() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert top == chart and top
    for name in top:
        assert filecmp.cmp(REPO / "crds" / name, CHART / "crds" / name, shallow=False), name
        assert not (CHART / "crds" / name).is_symlink()


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))

    def leaves(node: Any, prefix: str = "") -> list[str]:
        if isinstance(node, dict) and node and not prefix.endswith(("resources", "limits", "requests")):
            return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}.{key}".lstrip("."))]
        return [prefix]

    for leaf in leaves(values):
        key = leaf.split(".")[-1]
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert lines[index - 1].strip().startswith("# --"), f"{leaf} has no '# --' comment"


@pytest.mark.helm
@pytest.mark.parametrize("values", [[], NON_DEFAULT], ids=["default", "non-default"])
def test_lint_and_template_validate(values: list[str]) -> None:
    lint = helm("lint", str(CHART), "--strict", *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(*values)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            # the servers' Service port name, and the operator's metrics Service's
            assert doc["spec"]["endpoints"][0]["port"] in ("http", "metrics")
            continue
        validate_any(doc)


@pytest.mark.helm
def test_non_default_values_land_where_they_should() -> None:
    docs = {d["kind"]: d for d in render(*NON_DEFAULT)}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=search" in container["args"] and "--verbose" in container["args"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["RERANKER_IMAGE"] == "registry.example/reranker-server:1.2.3"
    assert env["DEFAULT_REDIS_URL"] == "redis://redis.cache:6379/0"
    assert env["KEDA_PROMETHEUS_ADDRESS"] == "http://prometheus.monitoring:9090"
    assert env["AUTOSCALE_INTERVAL"] == "5"
    assert json.loads(env["DEFAULT_RATE_LIMITS"]) == {"requestsPerSecond": 20, "pairBurst": 4000}
    assert (
        env["METRICS_PORT"] == "9102"
        and {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in (container["ports"])
    )
    assert env["OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert docs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "custom-sa"
    assert docs["Reranker"]["spec"]["model"]["name"]
    assert docs["ServiceMonitor"]["metadata"]["labels"]["release"] == "prom"
    assert docs["Deployment"]["metadata"]["name"] == "rr-operator"


@pytest.mark.helm
def test_schema_refuses_bad_values() -> None:
    for bad in (
        ["--set", "operator.livenessPort=0"],
        ["--set", "sampleReranker.hardwareClass=tpu"],
        ["--set", "typo=1"],
        ["--set", "autoscaling.keda.prometheusAddress=prometheus:9090"],
        ["--set", "rateLimits.pairsPerSecond=0"],
        ["--set", "rateLimits.tokensPerSecond=5"],
        ["--set", "dashboard.labels.grafana_dashboard=1"],  # a label value is a string
    ):
        result = helm("lint", str(CHART), *bad)
        assert result.returncode != 0, bad


@pytest.mark.helm
def test_rbac_grants_exactly_what_the_operator_uses() -> None:
    role = next(d for d in render() if d["kind"] == "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == rbac.merged()


@pytest.mark.helm
def test_each_machine_gets_a_role_for_its_own_endpoint_and_lease() -> None:
    from reranker_server.api.registration import OWN_NAME_ONLY, REQUIRED_PERMISSIONS

    docs = render("--set", "registrar.machines[0].name=mac-1", "--set", "registrar.machines[0].namespace=search",
                  "--set", "registrar.machines[1].name=mac-2")  # fmt: skip
    roles = {r["metadata"]["name"]: r for r in docs if r["kind"] == "Role"}
    assert set(roles) == {"rel-reranker-registrar-mac-1", "rel-reranker-registrar-mac-2"}
    assert roles["rel-reranker-registrar-mac-1"]["metadata"]["namespace"] == "search"
    assert roles["rel-reranker-registrar-mac-2"]["metadata"]["namespace"] == "ops"  # the release's
    for machine, role in (
        ("mac-1", roles["rel-reranker-registrar-mac-1"]),
        ("mac-2", roles["rel-reranker-registrar-mac-2"]),
    ):
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
                    if set(rule["verbs"]) & OWN_NAME_ONLY:  # renew and withdraw: its own name only
                        own = machine if resource == "rerankerendpoints" else f"reranker-endpoint-{machine}"
                        assert rule["resourceNames"] == [own] and set(rule["verbs"]) <= OWN_NAME_ONLY
                    else:
                        assert "resourceNames" not in rule and rule["verbs"] == ["create"]
        assert granted == REQUIRED_PERMISSIONS
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {b["subjects"][0]["name"] for b in bindings} == set(roles)  # one ServiceAccount per machine
    assert not [d for d in render() if d["kind"] in ("Role", "RoleBinding")]  # no machines, no rights


@pytest.mark.helm
def test_rbac_can_be_left_to_the_user() -> None:
    kinds = {d["kind"] for d in render("--set", "rbac.create=false", "--set", "serviceAccount.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    kinds = {d["kind"] for d in render("--set", "serviceAccount.create=false", "--set", "registrar.enabled=false",
                                       "--set", "registrar.machines[0].name=mac-1")}  # fmt: skip
    assert "ServiceAccount" not in kinds


def test_notes_tell_what_to_apply_next() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kind: Reranker" in notes and "never upgraded" in notes


def test_the_prometheus_adapter_snippet_serves_what_the_hpa_engine_asks_for() -> None:
    from reranker_operator.builders.scaling import LOAD_METRICS

    snippet = yaml.safe_load((CHART / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in snippet["rules"]["custom"]}
    assert served == set(LOAD_METRICS)
    for rule in snippet["rules"]["custom"]:
        assert rule["name"]["as"] in rule["seriesQuery"]
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
