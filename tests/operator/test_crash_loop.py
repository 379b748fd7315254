"""A server that keeps crashing shows on the Reranker: pure rules first, then the real operator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reranker_operator import conditions
from reranker_operator.crash_loop import ServerCrash, container_summary, crash_of
from tests.operator.conftest import Cluster
from tests.operator.fleet_pods import pod_manifest

LOAD_FAILURE = (
    "reranker-server: the model failed to load: CheckpointError: MODEL_NAME: directory '/models/minilm-cross' "
    "does not exist"
)


def server_status(
    restarts: int, *, waiting: str | None = "CrashLoopBackOff", message: str | None = LOAD_FAILURE, ready: bool = False
) -> dict[str, Any]:
    """A pod's status as the kubelet writes it for the server container."""
    last = {"terminated": {"exitCode": 1, "reason": "Error", **({"message": message} if message else {})}}
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": "2026-12-05T10:00:00Z"}}
    container = {"name": "server", "ready": ready, "restartCount": restarts, "state": state, "lastState": last}
    return {"podIP": "10.1.0.7", "containerStatuses": [{"name": "sidecar", "restartCount": 9}, container]}


def trimmed(status: dict[str, Any], name: str = "minilm-abc", deleting: bool = False) -> dict[str, Any]:
    meta = {"name": name, "deletionTimestamp": "2026-12-05T10:00:00Z" if deleting else None}
    return {"metadata": meta, "server": container_summary({"status": status})}


def test_a_model_that_cannot_load_is_model_load_failed_with_the_servers_line() -> None:
    crash = crash_of([trimmed(server_status(1))])
    assert crash == ServerCrash("ModelLoadFailed", LOAD_FAILURE)


def test_a_log_tail_as_the_message_gives_its_last_line() -> None:
    tail = "INFO loading\nTraceback (most recent call last):\n  ...\nMemoryError: out of memory\n"
    crash = crash_of([trimmed(server_status(3, waiting=None, message=tail))])
    assert crash == ServerCrash("ServerCrashLoop", "MemoryError: out of memory")


def test_no_message_says_the_exit_code() -> None:
    crash = crash_of([trimmed(server_status(2, waiting=None, message=None))])
    assert crash == ServerCrash("ServerCrashLoop", "the server exited with code 1 (Error)")


@pytest.mark.parametrize(
    "pod",
    [
        trimmed(server_status(1, waiting=None)),  # one restart: an eviction or an OOM at a peak
        trimmed(server_status(5, waiting=None, ready=True)),  # restarted before, serving now
        trimmed(server_status(4), deleting=True),  # on its way out (a rollout replaced it)
        {"metadata": {"name": "starting"}, "server": None},  # no container status yet
    ],
)
def test_what_is_not_a_crash_loop(pod: dict[str, Any]) -> None:
    assert crash_of([pod]) is None


def test_the_crash_is_degraded_and_ready_stays_waiting() -> None:
    deployment = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                  "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}}  # fmt: skip
    crash = ServerCrash("ModelLoadFailed", LOAD_FAILURE)
    computed = {c.type: c for c in conditions.compute(generation=1, problems=[], apply_error=None,
                                                      deployment=deployment, min_replicas=1, crash=crash)}  # fmt: skip
    assert (computed["Degraded"].status, computed["Degraded"].reason) == (True, "ModelLoadFailed")
    assert computed["Degraded"].message == LOAD_FAILURE
    assert (computed["Ready"].status, computed["Ready"].reason) == (False, "WaitingForReplicas")


@pytest.mark.slow
@pytest.mark.helm  # helm renders the chart's RBAC the emulator enforces
async def test_a_crash_looping_pod_degrades_its_reranker_with_one_event(cluster: Cluster) -> None:
    await cluster.apply("looping", {"model": {"name": "/models/minilm-cross"}})
    await cluster.eventually(lambda: cluster.condition("looping", "Ready").get("reason") == "WaitingForReplicas")
    pod = pod_manifest("looping", 0, "10.1.0.7", 8000)
    pod["status"] = server_status(1, waiting="CrashLoopBackOff")
    response = await cluster.client.post("/api/v1/namespaces/search/pods", json=pod)
    assert response.status_code < 300, response.text
    degraded = await cluster.eventually(
        lambda: (c := cluster.condition("looping", "Degraded")) and c.get("status") == "True" and c
    )
    assert (degraded["reason"], degraded["message"]) == ("ModelLoadFailed", LOAD_FAILURE)

    def warnings() -> list[dict[str, Any]]:
        events = cluster.api.live("v1/events", "search").values()
        return [e for e in events if e["involvedObject"]["name"] == "looping" and e["type"] == "Warning"]

    assert [e["reason"] for e in await cluster.eventually(warnings)] == ["ModelLoadFailed"]
    # it restarts again with the same words: no new Event
    pod["status"] = server_status(2, waiting="CrashLoopBackOff")
    path = f"/api/v1/namespaces/search/pods/{pod['metadata']['name']}/status"
    response = await cluster.client.patch(path, json={"status": pod["status"]},
                                          headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert response.status_code == 200, response.text
    await asyncio.sleep(1.5)
    assert len(warnings()) == 1
    # the pod is replaced by one that serves: Degraded clears
    await cluster.client.delete(path.removesuffix("/status"))
    await cluster.eventually(lambda: cluster.condition("looping", "Degraded").get("status") == "False")
