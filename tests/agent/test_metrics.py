"""The agent's metrics: the reconcile histogram, and a status rendered as Prometheus text (pure)."""
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.core import metrics
from meshcommon.contract.wire import AgentStatus, Histogram, PeerStatus, WriteCounts


def peer(name: str, node_id: str, online: bool = True, handshake: int | None = 1_700_000_000, rx: int = 0,
         tx: int = 0) -> PeerStatus:
    return PeerStatus(node_id=node_id, name=name, mesh_ip="100.64.0.9", public_key="K", endpoint=None, online=online,
                      configured=online, latest_handshake=handshake, latest_handshake_age=None, rx=rx, tx=tx)


def status(control: str = "connected", **changes) -> AgentStatus:
    fields = {"node_id": "n1", "name": "alpha", "mesh_ip": "100.64.0.1", "public_key": None, "interface": "mesh0",
              "backend": "kernel", "revision": 7, "applied_revision": 6, "control": control, "control_url": None,
              "unreachable_since": None, "last_error": None,
              "peers": [peer("beta", "n2", rx=1500, tx=900), peer("gamma", "n3", online=False, handshake=None)],
              "rejected": [], "writes": WriteCounts(5, 9),
              "reconcile_seconds": Histogram([0.01, 0.1], [3, 1, 1], 2.5)}
    return AgentStatus(**{**fields, **changes})


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, as a Prometheus server would read the text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_durations_fall_into_their_buckets_and_sum():
    durations = metrics.Durations(bounds=(0.01, 0.1), counts=[0, 0, 0])
    for seconds in (0.001, 0.01, 0.05, 3.0):
        durations.observe(seconds)
    assert durations.snapshot() == Histogram([0.01, 0.1], [2, 1, 1], pytest.approx(3.061))
    assert metrics.cumulative(durations.snapshot()) == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]


def test_a_running_agents_status_as_prometheus_text():
    got = samples(metrics.render(status()))
    beta, gamma = (("peer", "beta"), ("peer_id", "n2")), (("peer", "gamma"), ("peer_id", "n3"))
    assert got[("meshvpn_agent_up", ())] == 1
    assert got[("meshvpn_agent_info", (("backend", "kernel"), ("interface", "mesh0"), ("mesh_ip", "100.64.0.1"),
                                       ("node", "alpha"), ("node_id", "n1")))] == 1
    assert (got[("meshvpn_agent_revision", ())], got[("meshvpn_agent_applied_revision", ())]) == (7, 6)
    assert got[("meshvpn_agent_control_connected", ())] == 1
    assert got[("meshvpn_agent_peers", (("state", "online"),))] == 1
    assert got[("meshvpn_agent_peers", (("state", "offline"),))] == 1
    assert (got[("meshvpn_agent_peer_online", beta)], got[("meshvpn_agent_peer_online", gamma)]) == (1, 0)
    assert got[("meshvpn_agent_peer_last_handshake_seconds", beta)] == 1_700_000_000
    assert got[("meshvpn_agent_peer_last_handshake_seconds", gamma)] == 0  # never
    assert (got[("meshvpn_agent_peer_rx_bytes_total", beta)], got[("meshvpn_agent_peer_tx_bytes_total", beta)]) == (
        1500, 900)
    assert got[("meshvpn_agent_writes_total", (("kind", "netlink"),))] == 9
    assert got[("meshvpn_agent_reconcile_seconds_bucket", (("le", "0.1"),))] == 4
    assert got[("meshvpn_agent_reconcile_seconds_bucket", (("le", "+Inf"),))] == 5
    assert (got[("meshvpn_agent_reconcile_seconds_count", ())], got[("meshvpn_agent_reconcile_seconds_sum", ())]) == (
        5, 2.5)


def test_an_unreachable_control_plane_is_0_and_no_agent_running_says_up_0():
    assert samples(metrics.render(status("unreachable")))[("meshvpn_agent_control_connected", ())] == 0
    offline = samples(metrics.render(status("unknown", writes=None, reconcile_seconds=None, applied_revision=None)))
    assert offline[("meshvpn_agent_up", ())] == 0
    assert not any(name.startswith(("meshvpn_agent_control", "meshvpn_agent_writes", "meshvpn_agent_reconcile",
                                    "meshvpn_agent_applied")) for name, _ in offline)


def test_every_family_rendered_is_listed_and_every_listed_family_is_rendered():
    names = {family.name for family in text_string_to_metric_families(metrics.render(status()))}
    assert names == set(metrics.FAMILIES)


def test_names_and_labels_from_the_netmap_cannot_forge_lines():
    forged = status(peers=[peer('x"} 1\nmeshvpn_agent_up{a="', "n2")])
    got = samples(metrics.render(forged))
    assert got[("meshvpn_agent_up", ())] == 1 and len([k for k in got if k[0] == "meshvpn_agent_up"]) == 1


def test_importing_the_agent_metrics_does_not_load_prometheus_client(monkeypatch):
    for name in [m for m in sys.modules if m == "agent.metrics" or m.startswith("prometheus_client")]:
        monkeypatch.delitem(sys.modules, name)
    import agent.core.metrics  # noqa: F401
    assert "prometheus_client" not in sys.modules
