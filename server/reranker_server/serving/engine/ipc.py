"""Messages between the engine process and API processes: length-prefixed pickles on a Unix socket.

Both ends are this server's own processes (the socket is in a private directory), so pickle is
safe here and carries token tuples and score arrays without a schema.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from reranker_server.model.checkpoint import Checkpoint

_HEADER = struct.Struct("!I")


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def receive(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; ``IncompleteReadError`` when the other end went away."""
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    message: tuple[Any, ...] = pickle.loads(await reader.readexactly(length))
    return message


@dataclass(frozen=True)
class EngineState:
    """What the engine tells each API process on connecting and whenever its phase changes."""

    phase: str  # the engine's Runtime phase: loading, ready, failed, draining
    error: str | None = None
    checkpoint: Checkpoint | None = None  # API processes tokenize with it
    backend: tuple[str, str, str] | None = None  # name, device, dtype
    dtype_note: str = ""
    fallback_reason: str | None = None
    cache_enabled: bool = False


@dataclass(frozen=True)
class EngineCounts:
    """The engine's admission and cache, for /health."""

    in_progress: int
    queued: int
    cache_entries: int
