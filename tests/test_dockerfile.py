"""Cheap checks of the Dockerfile on every CI run (the opt-in `image` test really builds it)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KNOWN = {"FROM", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "VOLUME", "LABEL"}


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    current = "(global)"  # ARGs before the first FROM
    result: dict[str, list[tuple[str, str]]] = {current: []}
    for keyword, args in instructions():
        if keyword == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            result[current] = []
        result[current].append((keyword, args))
    return result


def test_every_instruction_is_known_and_stages_exist() -> None:
    for keyword, _ in instructions():
        assert keyword in KNOWN, keyword
    assert {"base", "server", "operator"} <= set(stages())


def test_every_copy_source_exists_and_is_not_ignored() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    for keyword, args in instructions():
        if keyword != "COPY":
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is .dockerignored"


def test_entrypoints_are_real_console_scripts_and_run_as_non_root() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("server", "operator"):
        entry = [args for keyword, args in stages()[name] if keyword == "ENTRYPOINT"][-1]
        command = entry.strip('[]"').split('"')[0]
        assert command in scripts, command
        users = [args for keyword, args in stages()[name] if keyword == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root")


def test_operator_image_has_no_torch_and_server_extra_installs_it() -> None:
    operator_runs = " ".join(args for keyword, args in stages()["operator"] if keyword == "RUN")
    assert "torch" not in operator_runs and ".[operator]" in operator_runs
    server_runs = " ".join(args for keyword, args in stages()["server"] if keyword == "RUN")
    assert ".[server]" in server_runs and "BAKE_MODEL" in server_runs


def test_images_install_the_locked_versions() -> None:
    for name, extra in (("server", ".[server]"), ("operator", ".[operator]")):
        installs = [args for keyword, args in stages()[name] if keyword == "RUN" and extra in args]
        assert installs and all("-c requirements-lock.txt" in args for args in installs), name


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git"} <= set(ignored)


def test_image_test_takes_its_mirror_from_apt_sources(tmp_path: Path) -> None:
    from tests.images import apt_mirror

    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert apt_mirror(sources=tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb [signed-by=/k.gpg] http://other.example/debian bookworm main\n")
    assert apt_mirror(sources=tmp_path) == "http://other.example/debian"
    assert apt_mirror("trixie", sources=tmp_path) is None
    assert "deb.debian.org" not in (REPO / "tests" / "images.py").read_text()
