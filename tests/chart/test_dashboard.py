"""The chart's Grafana dashboard: rendered with the sidecar's label, valid JSON, and every query
names a metric that a live server's or the live operator's /metrics exports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from tests.chart.test_chart import CHART, render
from tests.operator.emulator import ApiServerEmulator, running_operator
from tests.processes import free_port

DASHBOARD = CHART / "dashboards" / "reranker-fleet.json"
# PromQL words that are followed by "(" or "{" and are not metric names
_NOT_METRICS = {"sum", "rate", "increase", "histogram_quantile", "clamp_min", "min", "max", "by", "label_values"}


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Names a PromQL expression selects: identifiers followed by a label matcher, or bare in label_values."""
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))
    names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    return names - _NOT_METRICS


def exported(text: str) -> set[str]:
    """Every sample name a /metrics page can carry, from its TYPE lines (a labelled family with no
    sample yet still declares itself, a counter then under its ``_total`` name) and its samples."""
    suffixes = {"counter": ("", "_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created")}  # fmt: skip
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names |= {family + s for s in suffixes.get(kind, ("",))}
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return names


async def _page(url: str, log: Path) -> str:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                return (await client.get(url, timeout=1)).text
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"no /metrics at {url}:\n{(await asyncio.to_thread(log.read_text))[-3000:]}")


@pytest.mark.helm
def test_the_dashboard_renders_with_the_sidecar_label_only_when_asked() -> None:
    assert not [d for d in render() if d["kind"] == "ConfigMap"]
    docs = render("--set", "dashboard.enabled=true", "--set", "dashboard.annotations.grafana_folder=Search")
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Search"}
    dashboard = json.loads(config_map["data"]["reranker-fleet.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "reranker-fleet" and len(dashboard["panels"]) >= 8
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


@pytest.fixture
def server_metrics(start_server: Any, minilm_cross_dir: Path, tmp_path: Path) -> set[str]:
    """What a live server's /metrics exports after one keyed request."""
    keys = tmp_path / "keys"
    keys.write_text("sk-test\n")
    server = start_server({"MODEL_NAME": str(minilm_cross_dir), "API_KEY_FILE": str(keys)})
    headers = {"Authorization": "Bearer sk-test"}
    httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, headers=headers, timeout=60)
    return exported(httpx.get(f"{server.url}/metrics").text)


async def test_every_query_names_a_metric_the_server_or_the_operator_exports(
    server_metrics: set[str], tmp_path: Path
) -> None:
    # the live operator, against the API server emulator, serving its own /metrics
    port = free_port()
    async with ApiServerEmulator() as api, kmock.Server(api) as kube:
        settings = {"METRICS_PORT": str(port), "LIVENESS_PORT": str(free_port())}
        async with running_operator(str(kube.url).rstrip("/"), tmp_path, settings) as (_, log):
            operator_metrics = exported(await _page(f"http://127.0.0.1:{port}/metrics", log))
    assert {n for n in operator_metrics if n.startswith("reranker_operator_")}, "the operator exports no metrics"
    used = set().union(*(metric_names(q) for q in queries(json.loads(DASHBOARD.read_text()))))
    assert used, "no metric found in the dashboard's queries"
    missing = used - server_metrics - operator_metrics
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"
    assert {n for n in used if n.startswith("reranker_operator_")}, "no operator panel"
    assert {n for n in used if not n.startswith("reranker_operator_")}, "no server panel"
