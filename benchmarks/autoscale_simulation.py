"""Replay a day of traffic against the autoscaling engines and count SLO violations and pod-hours.

    python benchmarks/autoscale_simulation.py [--seed 7] [--plot day.png] [--macs 2]

The operator engine is the real decision code (``reranker_operator.autoscale.decision.Scaler``), fed what
it reads in a cluster: requests in progress + queued, every 5 s. The baseline is an HPA on CPU at
70% as Kubernetes runs one: every 15 s, on a CPU figure ~30 s old (kubelet rate window +
metrics-server scrape), 10% tolerance, the same replica bounds and the same ``behavior``
(stabilization windows, rate limits: the cpu profile's, or the HPA defaults with ``--hpa-defaults``).
The HPA half reuses ``Scaler`` for stabilization and rate limits, which follow the HPA's own rules.

The fleet is a fluid model, one-second steps: a pod serves up to K requests at once, each taking S
seconds (capacity K/S requests/s); what exceeds capacity waits in a queue; a new pod serves only
after ``--startup`` seconds. A request's queue time is the backlog ahead of it divided by the
capacity; the SLO is ``--slo`` seconds of queueing. Minutes, not hours: a day runs in seconds.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reranker_operator.autoscale.decision import Bounds, Sample, Scaler
from reranker_operator.profiles import PROFILES

DAY = 86_400
CPU = PROFILES["cpu"]
DEFAULT_BEHAVIOR: dict[str, Any] = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                             {"type": "Pods", "value": 4, "periodSeconds": 15}]},
    "scaleDown": {"stabilizationWindowSeconds": 300,
                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
}  # fmt: skip


@dataclass(frozen=True)
class Fleet:
    slots: int = 12  # K: requests a pod serves at once
    service_seconds: float = 0.4  # S
    startup_seconds: int = 60  # a new pod's model load + readiness
    min_pods: int = 1
    max_pods: int = 30
    macs: int = 0  # external endpoints, each one pod's capacity, always in rotation

    @property
    def per_pod(self) -> float:
        return self.slots / self.service_seconds


def traffic(seed: int, peak: float) -> list[float]:
    """Requests/s for each second of a day: a diurnal curve (trough 04:00, peak 14:00) plus
    bursts (3-20 minutes, 1.5-4x) and per-second noise."""
    rng = random.Random(seed)
    rate = []
    for t in range(DAY):
        phase = math.cos(2 * math.pi * (t / DAY - 14 / 24))
        rate.append(peak * (0.55 + 0.45 * phase))
    for _ in range(12):
        start, length, factor = rng.randrange(DAY), rng.randrange(180, 1200), rng.uniform(1.5, 4.0)
        ramp = 30
        for t in range(start, min(DAY, start + length)):
            edge = min(1.0, (t - start) / ramp, (start + length - t) / ramp)
            rate[t] *= 1 + (factor - 1) * edge
    return [max(0.0, r * rng.uniform(0.9, 1.1)) for r in rate]


@dataclass
class Run:
    name: str
    replicas: list[int] = field(default_factory=list)
    queue_seconds: list[float] = field(default_factory=list)
    served_late: float = 0.0
    arrived: float = 0.0
    pod_seconds: float = 0.0
    decisions: int = 0


def simulate(
    name: str, rates: list[float], fleet: Fleet, engine: str, slo: float, behavior: dict[str, Any], target: float
) -> Run:
    run = Run(name)
    starting: deque[int] = deque()  # time each not-yet-ready pod becomes ready
    ready = fleet.min_pods
    backlog = 0.0
    scaler = Scaler()
    if engine == "operator":
        bounds = Bounds(fleet.min_pods, fleet.max_pods, target, CPU.load_window_seconds, behavior)
        every = 5
    else:  # the HPA: 70% of a pod's CPU, the same stabilization and rate limits
        bounds = Bounds(fleet.min_pods, fleet.max_pods, target, 30, behavior)
        every = 15
    cpu_history: deque[float] = deque(maxlen=30)  # the busy fraction's last 30 s (what metrics-server reports)
    in_system = 0.0
    for t, rate in enumerate(rates):
        while starting and starting[0] <= t:
            starting.popleft()
            ready += 1
        capacity = (ready + fleet.macs) * fleet.per_pod
        demand = backlog + rate
        served = min(demand, capacity)
        queue_time = backlog / capacity if capacity else float("inf")
        run.arrived += rate
        if queue_time > slo:
            run.served_late += rate
        backlog = demand - served
        in_service = served * fleet.service_seconds
        busy = served / capacity if capacity else 1.0
        cpu_history.append(min(1.0, busy))
        in_system = in_service + backlog
        pods = ready + len(starting)
        run.pod_seconds += pods
        run.replicas.append(pods)
        run.queue_seconds.append(queue_time)
        if t % every:
            continue
        if engine == "operator":
            sample = Sample(in_system, True, fleet.macs)
        else:
            util = sum(cpu_history) / len(cpu_history)
            # its own pods' CPU (the Macs only lower it); within the HPA's 10% tolerance, no change
            near = abs(util / target - 1) <= 0.1
            sample = Sample((target if near else util) * ready, True, 0)
        decision = scaler.decide(float(t), pods, sample, bounds)
        if decision.replicas > pods:
            starting.extend([t + fleet.startup_seconds] * (decision.replicas - pods))
        elif decision.replicas < pods:
            drop = pods - decision.replicas
            while drop and starting:  # not-yet-ready pods go first
                starting.pop()
                drop -= 1
            ready -= drop
        run.decisions += decision.changed
    return run


def sparkline(values: list[float], width: int = 96) -> str:
    marks = " ▁▂▃▄▅▆▇█"
    step = len(values) // width
    buckets = [max(values[i : i + step]) for i in range(0, step * width, step)]
    top = max(buckets) or 1
    return "".join(marks[min(8, int(v / top * 8))] for v in buckets)


def report(runs: list[Run], rates: list[float], slo: float) -> None:
    print(f"{'engine':<34} {'requests over SLO':>18} {'minutes over SLO':>17} {'worst queue s':>14} "
          f"{'pod-hours':>10} {'scalings':>9}")  # fmt: skip
    for run in runs:
        minutes = sum(1 for m in range(0, DAY, 60) if max(run.queue_seconds[m : m + 60]) > slo)
        print(f"{run.name:<34} {run.served_late / run.arrived:>17.2%} {minutes:>17d} "
              f"{max(run.queue_seconds):>14.1f} {run.pod_seconds / 3600:>10.1f} {run.decisions:>9d}")  # fmt: skip
    print(f"\ntraffic (req/s, max per 15 min, peak {max(rates):.0f}):\n  {sparkline(rates)}")
    for run in runs:
        print(f"{run.name} pods (max {max(run.replicas)}):\n  {sparkline([float(r) for r in run.replicas])}")


def plot(runs: list[Run], rates: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [t / 3600 for t in range(DAY)]
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    axes[0].plot(hours, rates, lw=0.5, color="gray")
    axes[0].set_ylabel("requests/s")
    for run in runs:
        axes[1].plot(hours, run.replicas, lw=0.8, label=run.name)
        axes[2].plot(hours, run.queue_seconds, lw=0.6, label=run.name)
    axes[1].set_ylabel("pods")
    axes[1].legend()
    axes[2].set_ylabel("queue time (s)")
    axes[2].set_yscale("symlog", linthresh=0.1)
    axes[2].set_xlabel("hour of day")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--peak", type=float, default=200.0, help="diurnal peak, requests/s (before bursts)")
    parser.add_argument("--slo", type=float, default=0.5, help="queue time a request may wait, seconds")
    parser.add_argument("--startup", type=int, default=60, help="seconds from a new pod to serving")
    parser.add_argument("--macs", type=int, default=0, help="external endpoints always in rotation")
    parser.add_argument("--hpa-defaults", action="store_true", help="both engines on the HPA's default behavior")
    parser.add_argument("--plot", type=Path, help="write a PNG (needs matplotlib)")
    args = parser.parse_args()
    if args.plot:
        import matplotlib  # noqa: F401 - fail before the run, not after it
    fleet = Fleet(startup_seconds=args.startup, macs=args.macs)
    behavior = DEFAULT_BEHAVIOR if args.hpa_defaults else CPU.scale_behavior
    rates = traffic(args.seed, args.peak)
    named = "HPA defaults" if args.hpa_defaults else "cpu profile"
    print(
        f"one day, seed {args.seed}: {sum(rates) / 1e6:.1f}M requests, peak {max(rates):.0f}/s; "
        f"pod capacity {fleet.per_pod:.0f}/s ({fleet.slots} at once x {fleet.service_seconds}s); "
        f"startup {fleet.startup_seconds}s; {fleet.macs} Macs; SLO: queue <= {args.slo}s; behavior: {named}\n"
    )
    runs = [
        simulate(f"operator (load, {target}/pod)", rates, fleet, "operator", args.slo, behavior, target)
        for target in (CPU.target_in_progress_requests, 10)
    ]
    runs.append(simulate("hpa (CPU 70%)", rates, fleet, "hpa", args.slo, behavior, 0.70))
    report(runs, rates, args.slo)
    if args.plot:
        plot(runs, rates, args.plot)


if __name__ == "__main__":
    main()
