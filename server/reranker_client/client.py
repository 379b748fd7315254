"""Clients for a reranker-server (or any Cohere/Jina-shaped endpoint), sync and async.

Retries with exponential backoff on 429, 503 and connection errors, honouring ``Retry-After``;
other errors raise ``RerankError`` with the server's message.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = {429, 503}


class RerankError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RankedDocument:
    index: int
    relevance_score: float
    text: str | None = None


def _payload(query: str, documents: list[str], top_n: int | None, return_documents: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "documents": documents, "return_documents": return_documents}
    if top_n is not None:
        body["top_n"] = top_n
    return body


def _parse(response: httpx.Response) -> list[RankedDocument]:
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise RerankError(response.status_code, message)
    return [
        RankedDocument(r["index"], r["relevance_score"], (r.get("document") or {}).get("text"))
        for r in response.json()["results"]
    ]


def retry_delay(attempt: int, response: httpx.Response | None, backoff: float, cap: float = 30.0) -> float:
    """Retry-After when the server gives one, else exponential backoff with jitter."""
    if response is not None:
        header = response.headers.get("retry-after")
        if header and header.replace(".", "", 1).isdigit():
            return min(float(header), cap)
    return float(min(cap, backoff * 2.0**attempt) * (0.5 + random.random() / 2))


def _retry_in(
    attempt: int, max_retries: int, response: httpx.Response | None, error: Exception | None, backoff: float
) -> float | None:
    """Seconds to wait before the next try, or None when this attempt's outcome is final."""
    retryable = error is not None or (response is not None and response.status_code in RETRY_STATUSES)
    return retry_delay(attempt, response, backoff) if retryable and attempt < max_retries else None


def _finish(response: httpx.Response | None, error: Exception | None) -> list[RankedDocument]:
    if error is not None:
        raise error
    assert response is not None
    return _parse(response)


def _auth(api_key: str | None) -> dict[str, str]:
    """The header the server (and Cohere's SDK) use; ``RERANKER_API_KEY`` when none is given."""
    key = api_key if api_key is not None else os.environ.get("RERANKER_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


class _ClientConfig:
    def __init__(self, *, max_retries: int, backoff: float, path: str) -> None:
        self.max_retries = max_retries
        self.backoff = backoff
        self.path = path


class RerankerClient(_ClientConfig):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        path: str = "/v1/rerank",
        api_key: str | None = None,
    ) -> None:
        super().__init__(max_retries=max_retries, backoff=backoff, path=path)
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=_auth(api_key))

    def rerank(
        self, query: str, documents: list[str], *, top_n: int | None = None, return_documents: bool = False
    ) -> list[RankedDocument]:
        body = _payload(query, documents, top_n, return_documents)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = self._http.post(self.path, json=body)
            except httpx.TransportError as exc:
                error = exc
            delay = _retry_in(attempt, self.max_retries, response, error, self.backoff)
            if delay is None:
                return _finish(response, error)
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RerankerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncRerankerClient(_ClientConfig):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        path: str = "/v1/rerank",
        api_key: str | None = None,
    ) -> None:
        super().__init__(max_retries=max_retries, backoff=backoff, path=path)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=_auth(api_key))

    async def rerank(
        self, query: str, documents: list[str], *, top_n: int | None = None, return_documents: bool = False
    ) -> list[RankedDocument]:
        body = _payload(query, documents, top_n, return_documents)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = await self._http.post(self.path, json=body)
            except httpx.TransportError as exc:
                error = exc
            delay = _retry_in(attempt, self.max_retries, response, error, self.backoff)
            if delay is None:
                return _finish(response, error)
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRerankerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
