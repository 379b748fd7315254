"""The server's probe paths and the ``/health`` keys the operator's probes read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEALTH_PATH = "/health"
READY_PATH = "/ready"  # 200 once the model is loaded and warmed up (startup and readiness probes)
LIVE_PATH = "/live"  # 200 while the process can serve (liveness probe)

HEALTHY = "healthy"  # the one ``status`` value that means "send me traffic"


@dataclass(frozen=True)
class HealthReport:
    """The parts of a ``/health`` body an external endpoint is judged by."""

    status: str | None
    model: str | None
    revision: str | None
    backend: str | None
    device: str | None

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY

    @classmethod
    def from_body(cls, body: Any) -> HealthReport:
        """Read a ``/health`` body; anything not shaped like one reads as unknown, not an error."""
        body = body if isinstance(body, dict) else {}
        model = body.get("model") if isinstance(body.get("model"), dict) else {}
        return cls(
            status=body.get("status"),
            model=model.get("name"),
            revision=model.get("revision"),
            backend=model.get("backend"),
            device=model.get("device"),
        )

    def body(self) -> dict[str, Any]:
        """The keys the server writes (the server adds more)."""
        model = {"name": self.model, "revision": self.revision, "backend": self.backend, "device": self.device}
        return {"status": self.status, "model": model}
