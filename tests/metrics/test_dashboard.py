"""etc/grafana/schedctl.json: an importable dashboard whose every query names a metric the
daemons export (the names come from the daemons' own registries)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemons.bus.metrics import exported_names
from daemons.coordinator.metrics import CoordinatorMetrics, Snapshot
from daemons.coordinator.testing import node_state
from daemons.gossip.memberlist import Memberlist
from daemons.gossip.metrics import GossipMetrics
from daemons.gossip.transport import TransportStats
from daemons.loadgen.metrics import LoadgenMetrics
from daemons.node.metrics import NodeMetrics
from tests.metrics.scrape import PROMTOOL, needs_promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "schedctl.json"
METRIC = re.compile(r"\bschedctl_[a-z0-9_]+")


def every_exported_name() -> set[str]:
    coordinator = CoordinatorMetrics("affinity-score", lambda: Snapshot(0, 0, 0, 0, 0, 0, "standalone", "active"))
    node = NodeMetrics()
    node.state = lambda: node_state("n")
    gossip = CollectorRegistry()
    GossipMetrics(lambda: (Memberlist("n", "tcp://127.0.0.1:1", generation=1, now=0.0), TransportStats()), gossip)
    registries = [coordinator.registry, node.registry, gossip, LoadgenMetrics().registry]
    return set().union(*(exported_names(r) for r in registries))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return out


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["node"]["type"] == "query"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    queried = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(queried) >= 20
    for panel in queried:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
    kinds = {p["type"] for p in queried}
    assert {"timeseries", "stat", "heatmap"} <= kinds


def test_every_query_names_an_exported_metric() -> None:
    exported = every_exported_name()
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{panel['title']}: {target['expr']} names no schedctl metric"
            unknown = names - exported
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not exported by any daemon"
            used |= names
    for variable in dashboard["templating"]["list"]:
        assert set(METRIC.findall(json.dumps(variable.get("query", "")))) <= exported
    # and the dashboard covers every daemon
    for daemon in ("coordinator", "node", "gossip", "loadgen"):
        assert any(n.startswith(f"schedctl_{daemon}_") for n in used), daemon


def test_the_cross_check_can_fail() -> None:
    assert "schedctl_node_requests_total" in every_exported_name()
    assert "schedctl_node_request_total" not in every_exported_name()


@needs_promtool
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each query as a recording rule, with Grafana's variables as Grafana fills them in
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$node": ".*"}
    rules = []
    for i, panel in enumerate(panels(dashboard)):
        for j, target in enumerate(panel.get("targets", [])):
            expr = target["expr"]
            for variable, value in fill.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            rules.append({"record": f"panel_{i}_{j}", "expr": expr})
    path = tmp_path / "rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
