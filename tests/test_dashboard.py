"""docs/grafana/meshvpn.json: valid JSON whose queries name only metrics the code exports."""
import json
import re
from pathlib import Path
from types import SimpleNamespace

from agent.core import metrics as agent_metrics
from control.api import metrics as control_metrics
from control.live.send_budget import SendBudget
from meshcommon.contract.wire import AgentStatus, Histogram, PeerStatus, WriteCounts

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "meshvpn.json"
# The names of the samples a metric family of each type exposes.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "info": ("_info",), "summary": ("", "_count", "_sum", "_created")}


def sample_names(families) -> set[str]:
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def agent_exports() -> set[str]:
    """Every family an agent with every part of its status renders."""
    status = AgentStatus(node_id="n1", name="a", mesh_ip="100.64.0.1", public_key=None, interface="mesh0",
                         backend="kernel", revision=1, applied_revision=1, control="connected", control_url=None,
                         unreachable_since=None, last_error=None,
                         peers=[PeerStatus("n2", "b", "100.64.0.2", "K", None, True, True, 1, 1.0, 1, 1)], rejected=[],
                         writes=WriteCounts(1, 1), reconcile_seconds=Histogram([0.1], [1, 0], 0.05))
    return sample_names(agent_metrics.families(status))


def control_exports() -> set[str]:
    cache, feed = SimpleNamespace(revision=1, nodes={}), SimpleNamespace(waiters=0)
    registered = [metric for collector in (control_metrics.REQUESTS, control_metrics.LATENCY, control_metrics.WAKE,
                                           control_metrics.NETMAPS) for metric in collector.describe()]
    return sample_names(registered) | sample_names(control_metrics.MembershipCollector(
        cache, feed, SendBudget(1, 1.0)).collect())


def queries(node) -> list[str]:
    """Every `expr` anywhere in the dashboard (panels, rows' panels, variables)."""
    if isinstance(node, dict):
        return ([node["expr"]] if isinstance(node.get("expr"), str) else []) + [
            q for value in node.values() for q in queries(value)]
    if isinstance(node, list):
        return [q for item in node for q in queries(item)]
    return []


def test_the_dashboard_names_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in queries(dashboard) for name in re.findall(r"\bmeshvpn_[a-z0-9_]+", expr)}
    exported = agent_exports() | control_exports()
    assert used - exported == set(), f"not exported: {sorted(used - exported)}"
    # Both halves are covered: the control plane's view and every agent's.
    assert {"meshvpn_control_nodes", "meshvpn_agent_peer_last_handshake_seconds",
            "meshvpn_agent_reconcile_seconds_bucket", "meshvpn_agent_control_connected"} <= used


def test_the_dashboard_is_a_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "meshvpn"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= set(panel)
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"].count("(") == target["expr"].count(")")


def test_the_observability_guide_names_only_exported_metrics():
    """Its samples, and its histograms by their family names."""
    text = (ROOT / "docs" / "observability.md").read_text()
    used = set(re.findall(r"\bmeshvpn_[a-z0-9_]+", text))
    exported = agent_exports() | control_exports()
    families = {name.removesuffix("_bucket") for name in exported if name.endswith("_bucket")}
    assert used - exported - families == set()
