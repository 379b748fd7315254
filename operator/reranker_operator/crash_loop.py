"""Pure: server pods whose container keeps dying, as the one problem the Reranker reports.

A pod that restarts never changes its Deployment's status after the first time it goes unready,
so without this a crash loop reads as "waiting for replicas" and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reranker_contract.termination import MODEL_LOAD_FAILED

SERVER_CONTAINER = "server"
RESTARTS_TO_REPORT = 2  # one restart can be an eviction or an OOM at a load peak; two is a pattern


@dataclass(frozen=True)
class ServerCrash:
    reason: str  # ModelLoadFailed or ServerCrashLoop
    message: str


def container_summary(pod: dict[str, Any]) -> dict[str, Any] | None:
    """What the watch cache keeps of a pod's server container status (the rest is ~10 KiB a pod)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == SERVER_CONTAINER), None)
    if status is None:
        return None
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    waiting = (status.get("state") or {}).get("waiting") or {}
    return {
        "ready": bool(status.get("ready")),
        "restartCount": int(status.get("restartCount") or 0),
        "waitingReason": waiting.get("reason"),
        "lastExitCode": terminated.get("exitCode"),
        "lastReason": terminated.get("reason"),
        "lastMessage": terminated.get("message"),
    }


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def crash_of(pods: list[dict[str, Any]]) -> ServerCrash | None:
    """The first current pod (not being deleted) whose server is in CrashLoopBackOff, or has
    restarted twice or more and is not ready now; its last words are the message."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        summary = pod.get("server")
        if summary is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        looping = summary["waitingReason"] == "CrashLoopBackOff"
        if not looping and (summary["restartCount"] < RESTARTS_TO_REPORT or summary["ready"]):
            continue
        said = _last_line(summary["lastMessage"])
        if not said:
            exit_code, why = summary["lastExitCode"], summary["lastReason"] or "no message"
            said = f"the server exited with code {exit_code} ({why})"
        # the server's words alone: a restart count or pod name in it would post an Event per restart
        return ServerCrash("ModelLoadFailed" if MODEL_LOAD_FAILED in said else "ServerCrashLoop", said)
    return None
