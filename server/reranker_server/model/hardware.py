"""Facts about the machine the server landed on: CPU quota, memory headroom, bf16 support, platform."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the cgroup quota (v2 or v1) if set, else the affinity mask."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota: float | None = None
    v2 = cgroup_root / "cpu.max"
    v1_quota, v1_period = cgroup_root / "cpu" / "cpu.cfs_quota_us", cgroup_root / "cpu" / "cpu.cfs_period_us"
    try:
        if v2.exists():
            limit, period = v2.read_text().split()[:2]
            if limit != "max":
                quota = int(limit) / int(period)
        elif v1_quota.exists() and v1_period.exists():
            limit_us = int(v1_quota.read_text())
            if limit_us > 0:
                quota = limit_us / int(v1_period.read_text())
    except (OSError, ValueError):
        quota = None
    if quota is None:
        return max(1, available)
    return max(1, min(available, math.ceil(quota)))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2) or absent: no limit


def _inactive_file(stat: Path, key: str) -> int:
    """Page cache the kernel reclaims before it OOM-kills (what kubelet leaves out of the working set)."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _own_cgroups(cgroup_root: Path, proc_cgroup: Path) -> list[tuple[Path, str]]:
    """(directory, "v2" or "v1") of this process's memory cgroup: the path /proc/self/cgroup names
    where it is mounted (a host without cgroup namespaces), else the mount's root (a container's)."""
    found: list[tuple[Path, str]] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            found.append((cgroup_root / path.lstrip("/"), "v2"))
        elif "memory" in controllers.split(","):
            found.append((cgroup_root / "memory" / path.lstrip("/"), "v1"))
    return [(d, v) for d, v in found if d.is_dir()] + [(cgroup_root, "v2"), (cgroup_root / "memory", "v1")]


def memory_headroom(
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    meminfo: Path = Path("/proc/meminfo"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> int | None:
    """Bytes this container may still allocate: its cgroup limit (v2 or v1) minus its working set
    (usage less inactive page cache), else the machine's MemAvailable; None when neither is readable."""
    files = {
        "v2": ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file"),
    }
    for directory, version in _own_cgroups(cgroup_root, proc_cgroup):
        limit_file, usage_file, stat_file, inactive = files[version]
        limit, usage = _read_int(directory / limit_file), _read_int(directory / usage_file)
        # v1 reports "no limit" as a number near 2**63
        if limit is not None and usage is not None and limit < 2**60:
            working_set = max(0, usage - _inactive_file(directory / stat_file, inactive))
            return max(0, limit - working_set)
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags on Linux (x86 ``flags``, arm64 ``Features``); empty elsewhere."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX512-BF16 or AMX on x86, the bf16 feature on arm64 Linux; Apple M2 and later on macOS."""
    if platform.system() == "Darwin":
        return platform.machine() == "arm64" and "M1" not in platform.processor()
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16", "bf16"})


def int8_needs_reduced_range(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """An x86 CPU without VNNI multiplies u8 by s8 with vpmaddubsw, whose 16-bit sums saturate on
    full-range weights; ONNX Runtime advises 7-bit weights (reduce_range) there."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return not cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni", "amx_int8"}


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"
