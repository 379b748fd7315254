"""API keys: which keys are valid now, and the check the protected routes depend on.

``API_KEY`` holds one or more keys (comma-separated); ``API_KEY_FILE`` one per line (blank lines
and ``#`` comments ignored), re-read when the file changes, so a Kubernetes Secret mounted as a
volume rotates without a restart: add the new key, move clients over, remove the old one.
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path

from fastapi import Request

from .errors import ApiError

logger = logging.getLogger(__name__)
_RECHECK_SECONDS = 1.0  # how often the key file's mtime is looked at


def parse_keys(text: str, separator: str | None = None) -> tuple[bytes, ...]:
    parts = text.split(separator) if separator else text.splitlines()
    return tuple(p.strip().encode() for p in parts if p.strip() and not p.strip().startswith("#"))


class ApiKeys:
    def __init__(self, inline: str | None, path: Path | None) -> None:
        self._inline = parse_keys(inline, ",") if inline else ()
        self._path = path
        self._from_file: tuple[bytes, ...] = ()
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self.enabled = bool(inline) or path is not None
        self._reload()

    def _reload(self) -> None:
        if self._path is None:
            return
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._stamp:
                self._from_file, self._stamp = parse_keys(self._path.read_text()), stamp
                logger.info("API keys: %d from %s", len(self._from_file), self._path)
                if not self._from_file and not self._inline:
                    logger.warning("API_KEY_FILE %s holds no key: every protected request is refused", self._path)
        except OSError as exc:  # a Secret being swapped: keep the last keys, try again shortly
            logger.warning("cannot read API_KEY_FILE %s: %s", self._path, exc)

    def accepts(self, presented: str | None) -> bool:
        """Constant-time in the key: every valid key is compared, whatever matched first."""
        now = time.monotonic()
        if self._path is not None and now - self._checked >= _RECHECK_SECONDS:
            self._checked = now
            self._reload()
        candidate = (presented or "").encode()
        matched = False
        for key in self._inline + self._from_file:
            matched |= hmac.compare_digest(candidate, key)
        return matched and bool(presented)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def check_key(request: Request) -> None:
    """Refuse (401) a request without a valid ``Authorization: Bearer <key>`` when keys are set."""
    keys: ApiKeys = request.app.state.api_keys
    if keys.enabled and not keys.accepts(bearer_token(request)):
        raise ApiError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            error_type="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request) -> None:
    """FastAPI dependency of the rerank routes and /info."""
    check_key(request)
