"""scripts/lock.py: the lock it writes and what it says about an environment that moved on."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", REPO / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lock_script"] = module
    spec.loader.exec_module(module)
    return module


def test_the_lock_pins_what_is_installed_but_torch_and_the_project(lock: ModuleType, tmp_path: Path) -> None:
    lock.write(tmp_path / "lock.txt")
    pins = lock.pins(tmp_path / "lock.txt")
    assert pins["pydantic"] == importlib.metadata.version("pydantic")
    assert not {"torch", "reranker-fleet", "pip"} & set(pins)
    assert lock.compare(tmp_path / "lock.txt") == 0


def test_compare_names_each_version_that_moved(
    lock: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pydantic = importlib.metadata.version("pydantic")
    written = tmp_path / "lock.txt"
    lock.write(written)
    text = written.read_text().replace(f"pydantic=={pydantic}\n", "pydantic==0.0.1\n") + "gone-package==1.0\n"
    written.write_text(text.replace("httpx==", "# httpx=="))
    capsys.readouterr()
    assert lock.compare(written) == 3
    said = capsys.readouterr().out
    assert f"pydantic: 0.0.1 -> {pydantic}" in said
    assert "gone-package: 1.0 -> not installed" in said and "httpx: " in said and "(not in the lock)" in said
    # the committed lock parses, and names what the tests import
    assert {"pydantic", "fastapi", "transformers", "kopf"} <= set(lock.pins(REPO / "requirements-lock.txt"))
