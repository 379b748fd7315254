"""API keys: which keys are valid now, and the check the protected routes depend on.

``API_KEY`` holds one or more keys (comma-separated); ``API_KEY_FILE`` one per line (blank lines
and ``#`` comments ignored), re-read when the file changes, so a Kubernetes Secret mounted as a
volume rotates without a restart: add the new key, move clients over, remove the old one.
A line may give the key its own rate limits after it, which win over the server's defaults:
``sk-team-a requests_per_second=20 pairs_per_second=2000 pair_burst=4000``.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from reranker_server.api.errors import ApiError
from reranker_server.serving.rate_limits import Limits, parse_limits

logger = logging.getLogger(__name__)
_RECHECK_SECONDS = 1.0  # how often the key file's mtime is looked at


@dataclass(frozen=True)
class ApiKey:
    secret: bytes
    limits: Limits | None = None  # its own, from the key file


def parse_keys(text: str, separator: str | None = None) -> tuple[ApiKey, ...]:
    """Inline keys (``separator``) are bare; a key file's line is ``<key> [limit=value ...]``."""
    parts = [p.strip() for p in (text.split(separator) if separator else text.splitlines())]
    keys = []
    for number, part in enumerate(parts, 1):
        if not part or part.startswith("#"):
            continue
        if separator:
            keys.append(ApiKey(part.encode()))
            continue
        secret, *options = part.split()
        try:
            keys.append(ApiKey(secret.encode(), parse_limits(options) if options else None))
        except ValueError as exc:  # the key still works, under the defaults; the log names the line
            logger.warning("API_KEY_FILE line %d: %s; that key gets the default limits", number, exc)
            keys.append(ApiKey(secret.encode()))
    return tuple(keys)


class ApiKeys:
    def __init__(self, inline: str | None, path: Path | None) -> None:
        self._inline = parse_keys(inline, ",") if inline else ()
        self._path = path
        self._from_file: tuple[ApiKey, ...] = ()
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

    def match(self, presented: str | None) -> ApiKey | None:
        """Constant-time in the key: every valid key is compared, whatever matched first."""
        now = time.monotonic()
        if self._path is not None and now - self._checked >= _RECHECK_SECONDS:
            self._checked = now
            self._reload()
        candidate = (presented or "").encode()
        found = None
        for key in self._inline + self._from_file:
            if hmac.compare_digest(candidate, key.secret) and found is None:
                found = key
        return found if presented else None

    def accepts(self, presented: str | None) -> bool:
        return self.match(presented) is not None


def bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def check_key(request: Request) -> None:
    """Refuse (401) a request without a valid ``Authorization: Bearer <key>`` when keys are set.

    The key that matched is left on ``request.state.api_key`` (None without keys) for rate limits.
    """
    keys: ApiKeys = request.app.state.api_keys
    request.state.api_key = None
    if not keys.enabled:
        return
    request.state.api_key = keys.match(bearer_token(request))
    if request.state.api_key is None:
        raise ApiError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            error_type="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request) -> None:
    """FastAPI dependency of the rerank routes and /info."""
    check_key(request)
