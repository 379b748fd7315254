"""How many servers share the fleet's rate limits, as the operator last said.

Pods read it from ``FLEET_SIZE_FILE`` (the operator's ``<name>-fleet`` ConfigMap, mounted: the
kubelet swaps the file in place), re-read at most once a second; a registered external machine
is told through its RerankerEndpoint's status, read at each Lease renewal. ``FLEET_SIZE`` is
the value until either says otherwise.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from reranker_server.core import metrics

logger = logging.getLogger(__name__)
_RECHECK_SECONDS = 1.0


class FleetSize:
    def __init__(self, initial: int, path: Path | None) -> None:
        self._value = max(1, initial)
        self._path = path
        self._checked = float("-inf")
        metrics.FLEET_SIZE.set(self._value)

    def set(self, value: int) -> None:
        value = max(1, value)
        if value != self._value:
            logger.info("fleet size %d -> %d: local rate-limit shares follow", self._value, value)
            self._value = value
            metrics.FLEET_SIZE.set(value)

    def get(self) -> int:
        now = time.monotonic()
        if self._path is not None and now - self._checked >= _RECHECK_SECONDS:
            self._checked = now
            self._read()
        return self._value

    def _read(self) -> None:
        assert self._path is not None
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:  # the ConfigMap is optional: not written yet
            return
        except OSError as exc:
            logger.warning("cannot read FLEET_SIZE_FILE %s: %s", self._path, exc)
            return
        if text.isdigit():
            self.set(int(text))
        else:
            logger.warning("FLEET_SIZE_FILE %s holds %r, not a whole number; keeping %d", self._path, text, self._value)
