"""How much the operator costs the API server at scale: N Rerankers against the emulated API server.

Runs the real ``reranker-operator`` process against ``tests/operator/emulator.py`` and prints
- time until every Reranker has its Deployment, Service and HPA and a status (``converge``);
- the requests that N Deployment status changes (a rollout finishing) cost (``rollout``);
- requests per minute and the operator's CPU while nothing changes (``idle``).

    .venv/bin/python benchmarks/operator_scale.py -n 100 --idle 120
    # an older operator, for before/after (its source tree's operator/ goes first on PYTHONPATH;
    # the emulator then enforces no RBAC, since an older chart may not grant what it needs):
    .venv/bin/python benchmarks/operator_scale.py -n 100 --operator-src /tmp/old --no-rbac

Counts are requests the emulator answered, by verb and resource, the benchmark's own left out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kmock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.operator.emulator import ApiServerEmulator, running_operator  # noqa: E402
from tests.operator.rbac import ADMIN, chart_authorizer  # noqa: E402
from tests.processes import free_port  # noqa: E402

NAMESPACE = "search"
DEPLOYMENTS = "apps/v1/deployments"
RERANKERS = "reranker.dev/v1alpha1/rerankers"


def operator_requests(api: ApiServerEmulator) -> collections.Counter[str]:
    """'verb resource' -> count, for every caller but the benchmark (the harness, as admin)."""
    out: collections.Counter[str] = collections.Counter()
    for (user, verb, resource), count in api.requests.items():
        if user != ADMIN:
            out[f"{verb} {resource}"] += count
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def operator_pid() -> int:
    import subprocess

    out = subprocess.run(["pgrep", "-f", "-n", "reranker_operator --all-namespaces"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def converged(api: ApiServerEmulator, names: list[str]) -> bool:
    rerankers = api.live(RERANKERS, NAMESPACE)
    kinds = [api.live(k, NAMESPACE) for k in (DEPLOYMENTS, "v1/services", "autoscaling/v2/horizontalpodautoscalers")]
    return all((rerankers.get(n) or {}).get("status", {}).get("url") and all(n in k for k in kinds) for n in names)


def all_ready(api: ApiServerEmulator, names: list[str]) -> bool:
    rerankers = api.live(RERANKERS, NAMESPACE)
    for name in names:
        conditions = (rerankers.get(name) or {}).get("status", {}).get("conditions") or []
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
    return True


async def wait_for(check: Any, limit: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            raise TimeoutError
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def table(title: str, counts: collections.Counter[str], minutes: float | None = None) -> None:
    total = sum(counts.values())
    rate = f", {total / minutes:.0f}/min" if minutes else ""
    print(f"  {title}: {total} requests{rate}")
    for key, count in counts.most_common():
        print(f"    {count:6d}  {key}")


async def run(args: argparse.Namespace) -> None:
    async with ApiServerEmulator() as api, kmock.Server(api) as server:
        if not args.no_rbac:
            api.enforce_rbac(chart_authorizer())
        url = str(server.url).rstrip("/")
        settings = {"LIVENESS_PORT": str(free_port()), "DRIFT_INTERVAL": str(args.drift_interval)}
        if args.operator_src:
            src = Path(args.operator_src)
            settings["PYTHONPATH"] = os.pathsep.join(str(src / d) for d in ("operator", "contract", "server"))
        workdir = Path(args.workdir)
        async with (
            running_operator(url, workdir, settings),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            await asyncio.sleep(3)  # kopf starts and lists (its startup requests are not counted below)
            pid = operator_pid()
            names = [f"rr-{i:03d}" for i in range(args.n)]
            path = f"/apis/reranker.dev/v1alpha1/namespaces/{NAMESPACE}/rerankers"

            before, cpu0 = operator_requests(api), cpu_seconds(pid)
            await asyncio.gather(*(
                client.post(path, json={"apiVersion": "reranker.dev/v1alpha1", "kind": "Reranker",
                                        "metadata": {"name": n}, "spec": {"model": {"name": "m"}}})
                for n in names
            ))  # fmt: skip
            took = await wait_for(lambda: converged(api, names), args.timeout)
            converge = operator_requests(api) - before
            print(f"converge: {args.n} Rerankers reconciled in {took:.1f} s, operator CPU "
                  f"{cpu_seconds(pid) - cpu0:.1f} s")  # fmt: skip
            table("requests", converge)

            await asyncio.sleep(3)  # let the create storm's echoes settle
            before, cpu0 = operator_requests(api), cpu_seconds(pid)
            for name in names:  # the deployment controller reports the rollout done
                await client.patch(
                    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status",
                    json={"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                                     "observedGeneration": 1}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )  # fmt: skip
            took = await wait_for(lambda: all_ready(api, names), args.timeout)
            await asyncio.sleep(2)
            print(f"rollout: {args.n} Deployment status changes -> every Reranker Ready in {took:.1f} s")
            table("requests", operator_requests(api) - before)

            before, cpu0, started = operator_requests(api), cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(args.idle)
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(pid) - cpu0
            print(f"idle: {elapsed:.0f} s with nothing changing, operator CPU {100 * cpu / elapsed:.1f}% of a core")
            table("requests", operator_requests(api) - before, elapsed / 60)
            denied = len(api.denied)
            print(f"refused by RBAC: {denied}" if api.authorizer else "RBAC: not enforced")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="Rerankers (default %(default)s)")
    parser.add_argument("--idle", type=float, default=120, help="seconds of steady state measured (%(default)s)")
    parser.add_argument("--drift-interval", type=float, default=60, help="DRIFT_INTERVAL (%(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="give up converging after (%(default)s s)")
    parser.add_argument("--operator-src", help="run the operator from this source tree (an older commit)")
    parser.add_argument("--no-rbac", action="store_true", help="don't enforce the chart's RBAC")
    parser.add_argument("--workdir", default="/tmp/operator-scale", help="kubeconfig and operator log")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; operator from {args.operator_src or REPO}")  # fmt: skip
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
