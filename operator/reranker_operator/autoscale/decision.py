"""The ``operator`` autoscaling engine's decision: pure, fed with load samples and the clock.

Load is what the fleet holds: ``reranker_requests_in_progress + reranker_queue_depth`` summed
over the ready pods and the ready external endpoints (the Macs), averaged over a window. The
fleet needs ``ceil(load / target)`` replicas; the Macs already are some of them, so the
Deployment gets the rest, clamped to ``[min, max]``. Stabilization windows and rate limits
follow the HPA's ``behavior`` (same field names, same semantics), so the profile's behavior
means the same under either engine. A sample with any unreadable pod never lowers the count.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any

# The HPA's defaults where a behavior leaves a field out (autoscaling/v2 documentation).
DEFAULT_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                           {"type": "Pods", "value": 4, "periodSeconds": 15}]}  # fmt: skip
DEFAULT_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}  # fmt: skip
TOLERANCE = 1e-6  # load exactly at a multiple of the target needs no extra replica


@dataclass(frozen=True)
class Bounds:
    min_replicas: int
    max_replicas: int
    target_per_replica: float  # requests in progress + queued, per replica
    window_seconds: float  # moving average of the load
    behavior: dict[str, Any] = field(default_factory=dict)

    def rules(self, direction: str) -> dict[str, Any]:
        default = DEFAULT_UP if direction == "scaleUp" else DEFAULT_DOWN
        return default | (self.behavior.get(direction) or {})


@dataclass(frozen=True)
class Sample:
    """One scrape of the fleet."""

    load: float  # in progress + queued, over everything that answered
    complete: bool  # every ready pod and endpoint answered, and every replica is ready
    ready_external: int  # external endpoints in rotation now


@dataclass(frozen=True)
class Decision:
    replicas: int  # what the Deployment should have now
    current: int
    load: float | None  # the windowed average the decision used
    desired_total: int | None  # replicas the load needs, external endpoints included
    reason: str
    cause: str = "load"  # the reason as a metric label: load, bounds, no_sample, hold_unready, rate_limited

    @property
    def changed(self) -> bool:
        return self.replicas != self.current


@dataclass
class Scaler:
    """One Reranker's memory: recent samples, recommendations and the changes it made."""

    samples: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    recommendations: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    changes: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)  # (time, delta)
    last: Decision | None = None

    def observe(self, now: float, load: float) -> None:
        self.samples.append((now, load))

    def average(self, now: float, window: float) -> float | None:
        while self.samples and self.samples[0][0] < now - window:
            self.samples.popleft()
        return sum(load for _, load in self.samples) / len(self.samples) if self.samples else None

    def decide(self, now: float, current: int, sample: Sample | None, bounds: Bounds) -> Decision:
        if sample is not None:
            self.observe(now, sample.load)
        load = self.average(now, bounds.window_seconds)
        external = sample.ready_external if sample else 0
        if current < bounds.min_replicas or current > bounds.max_replicas:
            target = min(max(current, bounds.min_replicas), bounds.max_replicas)
            return self._done(now, Decision(target, current, load, None, "outside replicas.min..max", "bounds"))
        if load is None:
            return self._done(now, Decision(current, current, None, None, "no load sample yet", "no_sample"))
        desired_total = max(0, math.ceil(load / bounds.target_per_replica - TOLERANCE))
        wanted = min(max(desired_total - external, bounds.min_replicas), bounds.max_replicas)
        self._recommend(now, wanted, bounds)
        replicas = self._stabilized(now, current, bounds)
        reason = f"load {load:.1f} / {bounds.target_per_replica:g} per replica = {desired_total}"
        if external:
            reason += f", {external} external endpoint{'s' if external > 1 else ''} ready"
        if replicas < current and not (sample and sample.complete):
            held = "not scaling down: a pod is unready or unreadable"
            return self._done(now, Decision(current, current, load, desired_total, held, "hold_unready"))
        cause = "load"
        if replicas != current:
            limited = self._rate_limited(now, current, replicas, bounds)
            if limited != replicas:
                reason += f" (rate-limited to {limited})"
                cause = "rate_limited"
            replicas = limited
        return self._done(now, Decision(replicas, current, load, desired_total, reason, cause))

    def _recommend(self, now: float, wanted: int, bounds: Bounds) -> None:
        self.recommendations.append((now, wanted))
        keep = max(bounds.rules(d)["stabilizationWindowSeconds"] for d in ("scaleUp", "scaleDown"))
        while self.recommendations and self.recommendations[0][0] < now - keep:
            self.recommendations.popleft()

    def _stabilized(self, now: float, current: int, bounds: Bounds) -> int:
        """As the HPA: up to the lowest recommendation of the up window, down to the highest of
        the down window (so one quiet minute doesn't undo a busy hour)."""
        up_window = bounds.rules("scaleUp")["stabilizationWindowSeconds"]
        down_window = bounds.rules("scaleDown")["stabilizationWindowSeconds"]
        up = min(r for t, r in self.recommendations if t >= now - up_window)
        down = max(r for t, r in self.recommendations if t >= now - down_window)
        return max(current, up) if up > current else min(current, down)

    def _rate_limited(self, now: float, current: int, replicas: int, bounds: Bounds) -> int:
        direction = "scaleUp" if replicas > current else "scaleDown"
        rules = bounds.rules(direction)
        if rules.get("selectPolicy") == "Disabled":
            return current
        limits = []
        for policy in rules.get("policies") or []:
            period = policy["periodSeconds"]
            moved = sum(d for t, d in self.changes if t > now - period and (d > 0) == (direction == "scaleUp"))
            start = current - moved  # replicas at the start of the period
            if direction == "scaleUp":
                step = policy["value"] if policy["type"] == "Pods" else math.ceil(start * policy["value"] / 100)
                limits.append(start + step)
            else:
                pods = policy["value"] if policy["type"] == "Pods" else None
                limits.append(start - pods if pods is not None else math.floor(start * (1 - policy["value"] / 100)))
        if not limits:
            return replicas
        pick = min if (rules.get("selectPolicy") == "Min") == (direction == "scaleUp") else max
        limit: int = pick(limits)
        return min(replicas, max(limit, current)) if direction == "scaleUp" else max(replicas, min(limit, current))

    def _done(self, now: float, decision: Decision) -> Decision:
        if decision.changed:
            self.changes.append((now, decision.replicas - decision.current))
            horizon = 3600.0  # longer than any policy period
            while self.changes and self.changes[0][0] < now - horizon:
                self.changes.popleft()
        self.last = decision
        return decision
