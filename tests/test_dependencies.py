"""Each image installs one extra (Dockerfile: ``.[server]``, ``.[operator]``): every third-party
module a package imports, at the top or inside a function, must be declared by its extra (or the
base dependencies). The test venv has every extra, so a missing one shows nowhere else but in a
real pod (the operator image once lacked prometheus-client: CrashLoopBackOff on a real cluster)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"reranker_server", "reranker_client", "reranker_operator", "reranker_contract"}
# imported only where the user installed them, each behind a check that says what is missing:
# MLX (Apple silicon, the mlx extra) and matplotlib (reranker-bench --plot)
OPTIONAL = {"reranker_server": {"mlx", "mlx-lm"}, "reranker_client": {"matplotlib"}}


def imported(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"}


def declared(*extras: str) -> set[str]:
    """What the base dependencies and every one of ``extras`` install (the contract ships in both
    images, so for it, what both extras install)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    every = [names(project["optional-dependencies"][e]) for e in extras]
    return names(project["dependencies"]) | (set.intersection(*every) if every else set())


@pytest.mark.parametrize(
    ("package", "folder", "extras"),
    [
        ("reranker_operator", "operator/reranker_operator", ("operator",)),
        ("reranker_contract", "contract/reranker_contract", ("server", "operator")),
        ("reranker_server", "server/reranker_server", ("server",)),
        ("reranker_client", "server/reranker_client", ()),
    ],
)
def test_every_module_a_package_imports_is_declared_by_its_extra(
    package: str, folder: str, extras: tuple[str, ...]
) -> None:
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(imported(REPO / folder)):
        distributions = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not distributions & (declared(*extras) | OPTIONAL.get(package, set())):
            missing[module] = sorted(distributions)
    assert not missing, f"{package} imports what {extras or 'the base dependencies'} don't install: {missing}"
