"""A chaos run's timeline: faults as step markers with their outcome, violations as events, logs named."""
from __future__ import annotations

from pathlib import PurePath

from testbed.chaos.invariants import Violation
from testbed.chaos.schedule import Fault
from testbed.chaos.timeline import fault_markers, log_of, pages, violation_events

WALL = 1_800_000_000.0


def test_a_fault_passes_unless_a_violation_came_while_it_was_live_or_a_threshold_after():
    fault = Fault(10.0, "pair_cut", "node1,node2", 5.0)
    late = Violation("availability", 20.0, "node1 pings node2", "no answer")
    begin, end = fault_markers(3, fault, WALL + 10.2, WALL + 15.3, [late], WALL, threshold=6.0)
    assert begin["phase"] == "begin" and begin["step"] == end["step"] == "3-pair_cut-node1,node2"
    assert end["outcome"] == "failed" and end["seen"] == "availability" and end["duration"] == 5.1
    after = Violation("safety", 30.0, "x", "y")
    assert fault_markers(3, fault, WALL + 10.2, WALL + 15.3, [after], WALL, 6.0)[1]["outcome"] == "passed"


def test_logs_are_named_by_host_and_program():
    assert log_of(PurePath("node3.log"), "").host == "node3"
    assert (log_of(PurePath("state-node3.1/wireguard-go.log"), "").host,
            log_of(PurePath("state-node3.1/wireguard-go.log"), "").program) == ("node3", "wireguard-go")
    assert log_of(PurePath("control2/control-4000.log"), "").host == "control2"


def test_the_page_holds_the_faults_the_violations_and_the_logs_escaped():
    fault = Fault(1.0, "agent_crash", "node1", 2.0)
    violation = Violation("safety", 2.5, "a registered key", "<script>alert(1)</script>")
    markers = fault_markers(1, fault, WALL + 1, WALL + 3, [violation], WALL, 6.0) + violation_events([violation], WALL)
    log = log_of(PurePath("node1.log"), '{"ts": "2027-01-15T08:00:02Z", "event": "peer_added", "peer": "node2"}\n')
    jsonl, html = pages([log], markers, "meshvpn chaos, seed 1", WALL + 10)
    assert jsonl.count("\n") == 4 and '"chaos_violation"' in jsonl and '"peer_added"' in jsonl
    assert "1-agent_crash-node1" in html and "failed" in html and "<script>alert" not in html
