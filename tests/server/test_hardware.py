"""Machine facts read from files: cgroup memory limits (v2, v1, nested, none), the CPU quota, CPU flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reranker_server.model import hardware
from reranker_server.model.hardware import cpu_quota, memory_headroom

GIB = 2**30


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def meminfo(tmp_path: Path) -> Path:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n")  # 20 GiB
    return path


@pytest.mark.parametrize(
    ("files", "proc_cgroup", "expected"),
    [
        # cgroup v2 in a container (namespaced: its own cgroup at the root); inactive page cache
        # (the model files it read) is reclaimable, so it does not count against the limit
        ({"memory.max": str(4 * GIB), "memory.current": str(3 * GIB), "memory.stat": f"anon 1\ninactive_file {GIB}\n"},
         "0::/\n", 2 * GIB),
        # cgroup v1
        ({"memory/memory.limit_in_bytes": str(4 * GIB), "memory/memory.usage_in_bytes": str(GIB),
          "memory/memory.stat": "total_inactive_file 0\n"}, "5:memory:/\n", 3 * GIB),
        # v1 without a limit reports a huge number: the machine's MemAvailable counts
        ({"memory/memory.limit_in_bytes": str(2**63 - 4096), "memory/memory.usage_in_bytes": str(GIB)},
         "5:memory:/\n", 20 * GIB),
        # v2 "max": no limit
        ({"memory.max": "max", "memory.current": str(GIB)}, "0::/\n", 20 * GIB),
        # a host without cgroup namespaces: the process's own cgroup is a subdirectory
        ({"memory/memory.limit_in_bytes": str(2**63 - 4096), "memory/memory.usage_in_bytes": str(GIB),
          "memory/pod/memory.limit_in_bytes": str(4 * GIB), "memory/pod/memory.usage_in_bytes": str(GIB)},
         "9:cpu:/\n5:memory:/pod\n", 3 * GIB),
        # over the limit already: no room, not a negative number
        ({"memory.max": str(GIB), "memory.current": str(2 * GIB)}, "0::/\n", 0),
    ],
)  # fmt: skip
def test_memory_headroom(tmp_path: Path, meminfo: Path, files: dict[str, str], proc_cgroup: str, expected: int) -> None:
    root = tmp_path / "cgroup"
    _write(root, files)
    (tmp_path / "self-cgroup").write_text(proc_cgroup)
    assert memory_headroom(root, meminfo, tmp_path / "self-cgroup") == expected


def test_memory_headroom_is_unknown_without_cgroups_or_meminfo(tmp_path: Path) -> None:
    assert memory_headroom(tmp_path / "none", tmp_path / "no-meminfo", tmp_path / "no-cgroup") is None


def test_cpu_quota_rounds_a_cgroup_v2_quota_up(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == min(2, len(os.sched_getaffinity(0)))


@pytest.mark.parametrize(
    ("machine", "flags", "bf16", "reduced"),
    [
        ("x86_64", "fpu avx2 fma", False, True),  # the AMD EPYC of the 2026-11 runs: no VNNI
        ("x86_64", "avx2 avx512f avx512_vnni", False, False),  # Cascade Lake
        ("x86_64", "avx2 avx512_vnni avx512_bf16 amx_bf16 amx_int8", True, False),  # Sapphire Rapids
        ("x86_64", "avx2 avx_vnni", False, False),  # Alder Lake
        ("aarch64", "fp asimd asimddp", False, False),  # arm64 has no vpmaddubsw to saturate
        ("aarch64", "fp asimd bf16", True, False),
    ],
)
def test_cpu_flags_decide_bf16_and_int8_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, flags: str, bf16: bool, reduced: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    key = "flags" if machine == "x86_64" else "Features"
    cpuinfo.write_text(f"processor\t: 0\n{key}\t\t: {flags}\n\nprocessor\t: 1\n{key}\t\t: {flags}\n")
    monkeypatch.setattr(hardware.platform, "system", lambda: "Linux")
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    assert hardware.cpu_flags(cpuinfo) == set(flags.split())
    assert hardware.cpu_has_native_bf16(cpuinfo) is bf16
    assert hardware.int8_needs_reduced_range(cpuinfo) is reduced


def test_no_cpuinfo_means_no_flags(tmp_path: Path) -> None:
    assert hardware.cpu_flags(tmp_path / "absent") == set()
