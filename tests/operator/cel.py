"""Our CRDs' validation as a real kube-apiserver runs it, with a real CEL implementation (cel-python).

The API server:
- applies ``default`` values top-down (a defaulted object is defaulted inside too) before it
  validates an object;
- evaluates every ``x-kubernetes-validations`` rule at each node present in the object, with
  ``self`` bound to that node; a rule that reads a missing field fails ("no such key");
- when a CRD is created, also evaluates the rules of each node that carries a ``default``
  against that default value, as written: a rule on ``replicas`` with ``default: {}`` sees
  ``{}``, which is how ``self.min <= self.max`` broke ``kubectl apply -f crds/``;
- accepts only structural schemas.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy

Schema = dict[str, Any]


@dataclass(frozen=True)
class RuleFailure:
    path: str  # where in the object, e.g. spec.replicas
    rule: str
    message: str  # the rule's message, or the evaluation error


_ENV = celpy.Environment()


def _evaluate(rule: str, value: Any) -> bool | str:
    """True, False, or the evaluation error (a missing key, a type error)."""
    program = _ENV.program(_ENV.compile(rule))
    try:
        result = program.evaluate({"self": celpy.json_to_cel(value)})
    except celpy.CELEvalError as exc:
        return f"{exc.args[0] if exc.args else exc}"
    if isinstance(result, celpy.CELEvalError):
        return f"{result.args[0] if result.args else result}"
    return bool(result)


def compile_all(schema: Schema) -> list[str]:
    """Every rule in the schema, each compiled (a syntax error raises)."""
    rules = []
    for _, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            _ENV.compile(rule["rule"])
            rules.append(rule["rule"])
    return rules


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """(path, node) for every schema node: properties, items and additionalProperties."""
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}".lstrip("."))
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}[*]")


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Structural defaulting: missing properties with a default get it, then are defaulted inside."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            known = set(schema.get("properties") or {})
            for key in value.keys() - known:
                value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def failures(schema: Schema, value: Any, path: str = "") -> list[RuleFailure]:
    """Every rule that does not hold on ``value`` (evaluated as is: default it first if needed)."""
    found = []
    for rule in schema.get("x-kubernetes-validations", []):
        outcome = _evaluate(rule["rule"], value)
        if outcome is not True:
            found.append(RuleFailure(path, rule["rule"], rule.get("message", "") if outcome is False else outcome))
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name in value:
                found += failures(child, value[name], f"{path}.{name}".lstrip("."))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value.keys() - set(schema.get("properties") or {}):
                found += failures(extra, value[key], f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += failures(schema["items"], item, f"{path}[{i}]")
    return found


def admit(schema: Schema, obj: dict[str, Any]) -> list[RuleFailure]:
    """What the API server's CEL validation says about creating ``obj``: defaulted, then checked."""
    return failures(schema, apply_defaults(schema, obj))


def default_failures(schema: Schema) -> list[RuleFailure]:
    """Rules that fail on a node's own ``default`` value, as written and as defaulted."""
    found = []
    for path, node in walk(schema):
        if "default" in node:
            for value in (node["default"], apply_defaults(node, node["default"])):
                found += failures(node, value, f"{path} (default {value!r})")
    return found


def structural_problems(schema: Schema, path: str = "") -> list[str]:
    """Where the schema breaks the structural-schema rules the API server enforces."""
    problems = []
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "type" not in schema and not int_or_string and not (preserve and path):
        problems.append(f"{path or '<root>'}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    if "$ref" in schema:
        problems.append(f"{path}: $ref is not allowed")
    for combinator in ("anyOf", "allOf", "oneOf"):
        for branch in schema.get(combinator, []):
            forbidden = {"type", "default", "description", "nullable", "additionalProperties"} & branch.keys()
            if forbidden and not (int_or_string and combinator == "anyOf" and branch.keys() == {"type"}):
                problems.append(f"{path}.{combinator}: {sorted(forbidden)} inside a branch")
    for name, child in (schema.get("properties") or {}).items():
        problems += structural_problems(child, f"{path}.{name}".lstrip("."))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += structural_problems(schema[key], f"{path}[*]")
    if path == "metadata" and set(schema.get("properties") or {}) - {"name", "generateName"}:
        problems.append("metadata: only name and generateName may be restricted")
    return problems
