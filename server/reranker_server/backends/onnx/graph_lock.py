"""One process at a time makes a given ONNX graph in a cache, and a killed try is not repeated.

Making a graph takes minutes and several times the model's weights in memory (onnx_export). Two
processes making the same one at once (the operator's loader Job and a server pod on the model
volume, or two servers on one host's cache) would each pay that; so the maker holds an exclusive
``flock`` on ``.making-<key>`` and the other waits for it, then finds the graph in the cache.
The kernel releases the lock however its holder ends, OOM kill included, but the file keeps what
the holder wrote into it (who, since when) until the holder empties it on the way out: a lock
file that still says so when the next process gets it was left by a try that was killed. That try
is not repeated: a container OOM-killed while exporting would otherwise be killed again at every
restart (CrashLoopBackOff) instead of serving on PyTorch. Deleting the file allows another try.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

LOCK_PREFIX = ".making-"


class EarlierTryKilled(RuntimeError):
    """A try at making this graph was killed before it finished (out of memory, most likely)."""


def _locked(path: Path) -> IO[str] | None:
    """``path`` open and exclusively locked, once no other process holds it; None where the file
    system has no locks (some NFS mounts): the graph is then made unguarded, as before."""
    while True:
        lock = path.open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as exc:
            lock.close()
            path.unlink(missing_ok=True)  # empty: it would say nothing to anyone
            logger.warning("no lock on %s (%s): making the graph without one", path, exc)
            return None
        try:
            if os.fstat(lock.fileno()).st_ino == path.stat().st_ino:
                return lock
        except FileNotFoundError:  # its maker finished and removed it while we waited
            pass
        lock.close()  # a lock on a removed file guards nothing: take the current one


@contextmanager
def making(root: Path, key: str) -> Iterator[bool]:
    """Held while this process makes graph ``key`` in ``root``; waits while another process does.
    Says whether it holds the lock (not where the file system has none)."""
    path = root / f"{LOCK_PREFIX}{key}"
    lock = _locked(path)
    if lock is None:
        yield False
        return
    try:
        lock.seek(0)
        left = lock.read().strip()
        if left:
            raise EarlierTryKilled(
                f"an earlier try at making {key} ({left}) was killed before it finished, out of memory "
                f"most likely: not tried again (delete {path} to try again)"
            )
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        lock.flush()
        try:
            yield True
        finally:  # ended, made or not: emptied before it goes, so a waiter on it finds no killed try
            lock.truncate(0)
            lock.flush()
            path.unlink(missing_ok=True)
    finally:
        lock.close()
