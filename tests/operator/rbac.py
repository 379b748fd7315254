"""The chart's RBAC, evaluated the way the API server's RBAC authorizer does.

``chart_authorizer()`` renders ``charts/reranker`` with a real helm and maps the emulator's two
bearer tokens to the ServiceAccounts its bindings name: the operator's (ClusterRoleBinding) and
each registering machine's (its own RoleBinding).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.operator.manifests import REPO

ADMIN = "test-harness (cluster-admin)"
# Bearer tokens the emulator's kubeconfigs carry: the operator's ServiceAccount, and each
# registering machine's (registrar_token(machine)).
OPERATOR_TOKEN = "operator-token"
MACHINES = ("mini-1", "mini-2")  # the machines the tests register, in namespace "search"


def registrar_token(machine: str) -> str:
    return f"registrar-token-{machine}"


RELEASE, RELEASE_NAMESPACE = "rel", "ops"
RENDER_VALUES = tuple(
    arg
    for i, machine in enumerate(MACHINES)
    for arg in (
        "--set",
        f"registrar.machines[{i}].name={machine}",
        "--set",
        f"registrar.machines[{i}].namespace=search",
    )
)


@dataclass(frozen=True)
class Denial:
    user: str
    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None

    @property
    def message(self) -> str:
        """The real API server's wording."""
        what = f"{self.resource.split('/')[0]}.{self.group}".rstrip(".")
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        named = f' "{self.name}"' if self.name else ""
        return (f'{what}{named} is forbidden: User "{self.user}" cannot {self.verb} resource "{self.resource}" '
                f'in API group "{self.group}" {where}')  # fmt: skip


def _matches(rule: dict[str, Any], verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(key: str, value: str) -> bool:
        values = rule.get(key) or []
        return "*" in values or value in values

    names = rule.get("resourceNames") or []
    return (
        has("verbs", verb)
        and has("apiGroups", group)
        and has("resources", resource)
        and (not names or (name is not None and name in names))
    )


@dataclass
class Authorizer:
    roles: dict[tuple[str | None, str], list[dict[str, Any]]] = field(default_factory=dict)  # (ns, name) -> rules
    bindings: list[dict[str, Any]] = field(default_factory=list)  # RoleBindings and ClusterRoleBindings
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> user

    @classmethod
    def from_manifests(cls, docs: list[dict[str, Any]], tokens: dict[str, str]) -> Authorizer:
        auth = cls(tokens=tokens)
        for doc in docs:
            if doc["kind"] in ("Role", "ClusterRole"):
                namespace = doc["metadata"].get("namespace") if doc["kind"] == "Role" else None
                auth.roles[namespace, doc["metadata"]["name"]] = doc.get("rules") or []
            elif doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                auth.bindings.append(doc)
        return auth

    def user(self, token: str) -> str:
        return self.tokens.get(token, ADMIN if not token else f"unknown token {token!r}")

    def _rules_for(self, user: str, namespace: str | None) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for binding in self.bindings:
            bound_ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
            if bound_ns is not None and bound_ns != namespace:
                continue  # a RoleBinding grants only inside its namespace
            subjects = binding.get("subjects") or []
            if not any(_subject_user(s) == user for s in subjects):
                continue
            ref = binding["roleRef"]
            role_ns = bound_ns if ref["kind"] == "Role" else None
            rules += self.roles.get((role_ns, ref["name"]), [])
        return rules

    def check(
        self, user: str, verb: str, group: str, resource: str, namespace: str | None, name: str | None
    ) -> Denial | None:
        if any(_matches(rule, verb, group, resource, name) for rule in self._rules_for(user, namespace)):
            return None
        return Denial(user, verb, group, resource, namespace, name)


def _subject_user(subject: dict[str, Any]) -> str | None:
    if subject.get("kind") == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace')}:{subject['name']}"
    if subject.get("kind") == "User":
        return str(subject["name"])
    return None


def render_chart(*values: str) -> list[dict[str, Any]]:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("no helm binary on PATH (make tools installs one): the chart's RBAC can't be rendered")
    result = subprocess.run(
        [helm, "template", RELEASE, str(REPO / "charts" / "reranker"), "--namespace", RELEASE_NAMESPACE, *values],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def chart_authorizer() -> Authorizer:
    """The chart's default RBAC; the emulator's operator and registrar tokens as its two ServiceAccounts."""
    docs = render_chart(*RENDER_VALUES)
    operator_binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    tokens = {OPERATOR_TOKEN: _subject_user(operator_binding["subjects"][0]) or ""}
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        subject = binding["subjects"][0]
        machine = next(m for m in MACHINES if subject["name"].endswith(f"-registrar-{m}"))
        tokens[registrar_token(machine)] = _subject_user(subject) or ""
    return Authorizer.from_manifests(docs, tokens)
