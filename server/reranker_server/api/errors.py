"""The one error type routes raise; rendered as JSON that Cohere, Jina and TEI clients can read."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        error_type: str = "validation",
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = f"{field}: {message}" if field and not message.startswith(field) else message
        self.field = field
        self.error_type = error_type
        self.retry_after = retry_after
        self._headers = headers or {}
        self.details = details or {}  # more the client can act on (a rate limit's name and rate)

    def body(self) -> dict[str, Any]:
        # "message" is what Cohere/Jina clients show; "error"/"error_type" is TEI's shape.
        return {
            "message": self.message,
            "error": self.message,
            "error_type": self.error_type,
            "field": self.field,
        } | self.details

    def headers(self) -> dict[str, str]:
        retry = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return self._headers | retry
