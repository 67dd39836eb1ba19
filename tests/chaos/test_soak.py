"""The chaos soak can fail: someone meddling with the lab behind the schedule's back is caught, by
the right invariant. A quiet mesh of four (no scheduled fault) and three meddlings on it."""
from __future__ import annotations

import os
import signal

from meshcommon.contract import keys
from testbed.chaos.run import Chaos, soak
from testbed.meshlab import lab_marks

pytestmark = lab_marks()


def peer_key(chaos: Chaos, name: str) -> str:
    return next(member.public_key for member in chaos.members() or () if member.name == name)


def remove_by_hand(chaos: Chaos) -> None:
    """node1 loses node2 from its WireGuard config (its agent repairs such drift within 10 s)."""
    chaos.nodes["node1"].host.run("wg", "set", "mesh0", "peer", peer_key(chaos, "node2"), "remove")


def freeze(chaos: Chaos) -> None:
    """node3's agent stops (SIGSTOP): no heartbeat, though no fault was scheduled."""
    os.kill(chaos.nodes["node3"].proc.pid, signal.SIGSTOP)


def thaw(chaos: Chaos) -> None:
    os.kill(chaos.nodes["node3"].proc.pid, signal.SIGCONT)


def plant(chaos: Chaos) -> None:
    """node4 gets a peer nobody registered."""
    stranger = keys.public_key_of(keys.new_private_key())
    chaos.nodes["node4"].host.run("wg", "set", "mesh0", "peer", stranger, "allowed-ips", "100.64.0.250/32")


def test_meddling_with_the_mesh_is_caught_by_the_right_invariants(tmp_path):
    lines: list[str] = []
    report = soak(11, 40, 4, tmp_path / "report.json", kinds=[], log=lines.append,
                  meddling=[(11.0, remove_by_hand), (13.0, freeze), (15.0, plant), (27.0, thaw)])
    print("\n".join(lines))
    assert report["schedule"] == [] and report["faults_by_kind"] == {}
    violated = {violation["invariant"] for violation in report["violations"]}
    assert {"convergence", "no_false_offline", "safety"} <= violated, report["violations"]
    planted = [v for v in report["violations"] if v["invariant"] == "safety"]
    assert all("node4" in v["seen"] and "100.64.0.250/32" in v["seen"] for v in planted)
    frozen = [v for v in report["violations"] if v["invariant"] == "no_false_offline"]
    assert [v["seen"] for v in frozen] == ["node3 declared offline"]
    assert all(v["t"] >= 11.0 for v in report["violations"]), "nothing is flagged before the meddling"
    assert report["replay"] == "make chaos SEED=11 DURATION=40 NODES=4 CONTROLS=1 KINDS="
    timeline = (tmp_path / "timeline-11.jsonl").read_text()
    assert timeline.count('"chaos_violation"') == len(report["violations"])
    assert '"node_offline"' in timeline and '"host": "node3"' in timeline  # the hosts' own logs, merged
    assert "chaos_violation" in (tmp_path / "timeline-11.html").read_text()
