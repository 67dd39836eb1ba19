"""`meshagent status --metrics` and `--metrics-listen` against real agents on lab hosts, and what
`meshagent status` says once the agent is gone."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

from agent.core import metrics
from testbed.meshlab import MESHAGENT, Node, all_ping, converged, lab_marks, wait_for

pytestmark = lab_marks()

SCRAPE = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def values(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_of_a_running_agent_then_status_without_it(lab, lab_control, tmp_path):
    token_file = tmp_path / "join.token"
    token_file.write_text(lab_control.join_token() + "\n")
    watched = Node(lab.add_host("n0"), tmp_path / "state-n0", [lab_control.url], token_file,
                   extra=("--metrics-listen", "9586"))
    nodes = [watched, Node(lab.add_host("n1"), tmp_path / "state-n1", [lab_control.url], token_file)]
    for node in nodes:
        node.start()
    wait_for(lambda: converged(nodes), 30, what="mesh convergence")
    wait_for(lambda: all_ping(nodes), 20, what="pings over the mesh")
    peer = (("peer", "n1"), ("peer_id", nodes[1].identity["node_id"]))

    printed = watched.host.run(MESHAGENT, "status", "--state-dir", str(watched.state_dir), "--metrics")
    got = values(printed.stdout)
    assert got[("meshvpn_agent_up", ())] == 1 and got[("meshvpn_agent_control_connected", ())] == 1
    assert got[("meshvpn_agent_applied_revision", ())] == got[("meshvpn_agent_revision", ())] > 0
    assert got[("meshvpn_agent_peer_last_handshake_seconds", peer)] > 0
    assert got[("meshvpn_agent_peer_rx_bytes_total", peer)] > 0 and got[("meshvpn_agent_peer_tx_bytes_total", peer)] > 0
    assert got[("meshvpn_agent_reconcile_seconds_count", ())] >= 1

    scraped = watched.host.run(sys.executable, "-c", SCRAPE, "http://127.0.0.1:9586/metrics").stdout
    assert {f.name for f in text_string_to_metric_families(scraped)} == set(metrics.FAMILIES)
    assert values(scraped)[("meshvpn_agent_peer_online", peer)] == 1
    # Loopback only: the mesh IP does not answer.
    refused = watched.host.run(sys.executable, "-c", SCRAPE, f"http://{watched.identity['mesh_ip']}:9586/metrics",
                               check=False)
    assert refused.returncode != 0

    lines = [json.loads(line) for line in watched.log.read_text().splitlines() if line.startswith("{")]
    assert all(line["host"] == "n0" and line["ts"].endswith("Z") and line["event"] for line in lines)
    assert any(line["event"] == "metrics_listening" and line["address"] == "127.0.0.1:9586" for line in lines)

    watched.stop()
    gone = watched.host.run(MESHAGENT, "status", "--state-dir", str(watched.state_dir), check=False)
    assert gone.returncode == 3 and "no agent answers" in gone.stderr
    offline = watched.host.run(MESHAGENT, "status", "--state-dir", str(watched.state_dir), "--metrics", check=False)
    assert offline.returncode == 3 and values(offline.stdout)[("meshvpn_agent_up", ())] == 0
    nodes[1].stop()
