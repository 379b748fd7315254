"""The per-Reranker state registry: one typed object per uid, gone when its Reranker goes."""

from __future__ import annotations

from reranker_operator.state import Registry


def test_each_uid_has_its_own_state_until_it_is_forgotten() -> None:
    registry = Registry()
    first = registry.of("uid-1")
    first.last_status = {"replicas": 2}
    first.autoscaler.scaling = {"desiredReplicas": 2}
    assert registry.of("uid-1") is first and len(registry) == 1
    assert registry.of("uid-2").last_status is None  # a Reranker re-created under the same name: another uid
    registry.forget("uid-1")
    registry.forget("never-seen")
    again = registry.of("uid-1")
    assert again is not first and again.last_status is None and again.autoscaler.scaling is None
    assert again.lock is not first.lock
