"""The test lock (requirements-lock.txt): write it from this environment, or say how this one differs.

    python scripts/lock.py write requirements-lock.txt    # `make lock`
    python scripts/lock.py compare requirements-lock.txt  # `make test-latest`

torch and the CUDA wheels it pulls are left out: the Makefile's TORCH and the Dockerfile's
TORCH_SPEC pin the build (CPU or CUDA), and a CUDA image must not be held to the CPU build's pins.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

HEADER = """\
# The versions the test suite was last run and passed with: `make test`, .ci/run and the images
# install with `-c` this file. Written by `make lock` (the newest releases pyproject.toml allows);
# `make test-latest` says what newer releases change. Not for users: they install pyproject's ranges.
"""
# the project itself, and what TORCH / TORCH_SPEC choose
LEFT_OUT = re.compile(r"^(reranker-fleet|torch|triton|nvidia-.*|cuda-.*)$")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;#]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    found = {_canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    return {name: version for name, version in found.items() if not LEFT_OUT.match(name)}


def pins(lock: Path) -> dict[str, str]:
    matches = (PIN.match(line.strip()) for line in lock.read_text().splitlines())
    return {_canonical(m[1]): m[2] for m in matches if m}


def write(lock: Path) -> None:
    tooling = {"pip", "setuptools", "wheel"}
    lines = [f"{name}=={version}" for name, version in sorted(installed().items()) if name not in tooling]
    lock.write_text(HEADER + "\n".join(lines) + "\n")
    print(f"{lock}: {len(lines)} pins")


def compare(lock: Path) -> int:
    """Prints what differs; returns how many packages do."""
    locked, now = pins(lock), installed()
    rows = [f"  {n}: {locked[n]} -> {now[n]}" for n in sorted(locked.keys() & now.keys()) if locked[n] != now[n]]
    rows += [f"  {n}: {now[n]} (not in the lock)" for n in sorted(now.keys() - locked.keys())]
    rows += [f"  {n}: {locked[n]} -> not installed" for n in sorted(locked.keys() - now.keys())]
    differs = [r for r in rows if not r.lstrip().startswith(("pip:", "setuptools:", "wheel:"))]
    if not differs:
        print(f"same versions as {lock}")
        return 0
    print(f"installed versions that differ from {lock} ({len(differs)}):")
    print("\n".join(differs))
    return len(differs)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"write", "compare"}:
        print(__doc__, file=sys.stderr)
        return 2
    lock = Path(argv[2])
    if argv[1] == "write":
        write(lock)
    else:
        compare(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
