"""reranker-bench: new texts every run unless a seed is given; --plot checked before the run; an
endless workload (a soak) stops at its deadline."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from reranker_client import bench


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, list[str]]]]:
    """Runs nothing over HTTP; records each run's workload."""
    workloads: list[list[tuple[str, list[str]]]] = []

    async def fake_run(url: str, api: str, workload: Any, level: int, *_: Any) -> bench.RunResult:
        workloads.append(workload)
        pairs = sum(len(docs) for _, docs in workload)
        return bench.RunResult(level, len(workload), pairs, 1.0, [0.01] * len(workload), {"200": len(workload)})

    monkeypatch.setattr(bench, "run", fake_run)
    return workloads


ARGS = ["-n", "3", "-d", "2", "-l", "8", "--no-progress"]


def test_every_run_gets_new_texts_and_prints_its_seed(recorded: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(ARGS)
    bench.main(ARGS)
    first, second = recorded
    assert first != second  # a second run is not served from the first one's cached scores
    seeds = [line.split()[1] for line in capsys.readouterr().err.splitlines() if line.startswith("seed ")]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    bench.main([*ARGS, "--seed", seeds[0]])
    assert recorded[2] == first  # --seed repeats a run


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    assert "(default: 100)" in capsys.readouterr().out


def test_plot_without_matplotlib_fails_before_the_run(
    recorded: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(SystemExit, match="--plot needs matplotlib"):
        bench.main([*ARGS, "--plot", str(tmp_path / "out.png")])
    assert recorded == []


def test_an_endless_workload_runs_until_its_deadline_and_counts_what_it_sent(accepting_url: str) -> None:
    taken = 0

    def endless() -> Iterator[tuple[str, list[str]]]:
        nonlocal taken
        for i in itertools.count():
            taken += 1
            yield f"query {i}", ["a", "b"]

    started = time.monotonic()
    result = asyncio.run(bench.run(accepting_url, "cohere", endless(), 4, stop_at=started + 0.5))
    assert 0.5 <= time.monotonic() - started < 10  # it stopped, and not before the deadline
    assert result.requests == taken > 4 and result.ok == taken and result.pairs == 2 * taken
