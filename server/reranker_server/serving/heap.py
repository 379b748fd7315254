"""Hand freed heap back to the operating system: glibc keeps it resident otherwise."""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to hand back this way
        return None


def return_freed_heap() -> None:
    """``malloc_trim(0)``: free pages at the top and inside glibc's arenas go back to the OS."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
