"""Facts about the machine the server landed on: CPU quota, bf16 support, platform."""

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


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX512-BF16 or AMX on x86, the bf16 feature on arm64 Linux; Apple M2 and later on macOS."""
    if platform.system() == "Darwin":
        return platform.machine() == "arm64" and "M1" not in platform.processor()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"
