"""The demo's verdicts: each check says what it expected and what it saw."""
from __future__ import annotations

from datetime import UTC, datetime

from demo.steps import (
    Outcome,
    Result,
    Scenario,
    Step,
    chat_outcome,
    diagram_outcome,
    pairs,
    pings_outcome,
    playbook_outcome,
    recap,
    received_outcome,
    reports,
    spread,
    summary,
)

CRASH_OUTPUT = """
TASK [Report the outcome] ******************************************************
\x1b[0;32mok: [localhost -> node1(10.213.90.11)] => {\x1b[0m
\x1b[0;32m    "msg": "crash_node: node3 (100.64.0.3) removed from node1's WireGuard config after 5.6 s"\x1b[0m
}
ok: [node2] => {
    "msg": "every_peer: node3 (100.64.0.3) absent from node2's WireGuard config"
}
PLAY RECAP *********************************************************************
localhost                  : ok=7    changed=1    unreachable=0    failed=0
"""
FAILED_OUTPUT = """
TASK [Check it happened in time] ***********************************************
fatal: [localhost]: FAILED! => {"assertion": "fault__waited.stdout | float <= fault_limit | float", "changed": false}
PLAY RECAP *********************************************************************
localhost                  : ok=6    changed=1    unreachable=0    failed=1    skipped=0
"""


def test_reports_are_the_fault_playbooks_outcome_messages_without_colour():
    assert reports(CRASH_OUTPUT) == [
        "crash_node: node3 (100.64.0.3) removed from node1's WireGuard config after 5.6 s",
        "every_peer: node3 (100.64.0.3) absent from node2's WireGuard config"]


def test_a_playbook_that_passed_shows_its_report_and_one_that_failed_what_failed():
    passed = playbook_outcome("crash_node", 0, CRASH_OUTPUT)
    assert passed.ok and len(passed.details) == 2
    assert passed.seen == ("crash_node: node3 (100.64.0.3) removed from node1's WireGuard config after 5.6 s; "
                           "every_peer: all 1 other nodes agree")
    failed = playbook_outcome("crash_node", 2, FAILED_OUTPUT)
    assert not failed.ok and failed.seen == "crash_node exited 2"
    assert failed.details[0].startswith("fatal: [localhost]: FAILED!") and "failed=1" in failed.details[1]
    assert playbook_outcome("x", 0, "").seen == "x: ok"


def test_a_playbook_without_reports_shows_its_recap():
    output = """PLAY RECAP *****
control                    : ok=40   changed=16   unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
node1                      : ok=30   changed=14   unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
"""
    assert recap(output) == "2 hosts, changed=30 unreachable=0 failed=0"
    assert playbook_outcome("deploy", 0, output).seen == "deploy: 2 hosts, changed=30 unreachable=0 failed=0"


def test_every_ordered_pair_pings():
    assert pairs(["b", "a", "c"]) == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")]


def test_pings_must_all_answer_or_during_a_cut_all_fail():
    ok = pings_outcome({("a", "b"): True, ("b", "a"): True})
    assert ok == Outcome(True, "2 of 2 pairs answered")
    bad = pings_outcome({("a", "b"): True, ("b", "a"): False, ("a", "c"): False})
    assert not bad.ok and bad.seen == "1 of 3 pairs answered; not: a->c, b->a"
    assert pings_outcome({("a", "b"): False}, expect_answer=False).ok
    assert not pings_outcome({("a", "b"): True}, expect_answer=False).ok
    assert not pings_outcome({}).ok


def test_chat_must_reach_the_expected_state_and_a_failure_must_say_why():
    assert chat_outcome("node1", "node2", 200, {"state": "delivered", "reason": None}, "delivered").ok
    wrong = chat_outcome("node1", "node2", 200, {"state": "failed", "reason": "peer offline"}, "delivered")
    assert not wrong.ok and wrong.seen == "node1 -> node2: failed (peer offline), expected delivered"
    visible = chat_outcome("node1", "node3", 200, {"state": "failed", "reason": "peer offline"}, "failed")
    assert visible == Outcome(True, "node1 -> node3: failed (peer offline)")
    assert not chat_outcome("node1", "node3", 200, {"state": "failed", "reason": ""}, "failed").ok
    http = chat_outcome("node1", "node3", 404, {"title": "unknown peer", "description": "not a peer"}, "failed")
    assert not http.ok and http.seen == "node1 -> node3: HTTP 404: not a peer"


def test_the_receiver_must_hold_the_message_as_received():
    history = {"messages": [{"text": "hi", "direction": "out"}, {"text": "hello", "direction": "in"}]}
    assert received_outcome("node2", "hello", history).ok
    assert not received_outcome("node2", "hi", history).ok
    assert not received_outcome("node2", "hello", None).ok


def test_spread_is_the_first_line_of_each_host_after_the_step_began():
    since = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)
    events = [
        {"ts": "2026-11-30T19:59:59Z", "host": "node1", "event": "peer_removed", "peer": "node3"},  # before
        {"ts": "2026-11-30T20:00:05.5Z", "host": "node2", "event": "peer_removed", "peer": "node3"},
        {"ts": "2026-11-30T20:00:06Z", "host": "node1", "event": "peer_removed", "peer": "node3"},
        {"ts": "2026-11-30T20:00:07Z", "host": "node1", "event": "peer_removed", "peer": "node3"},  # again
        {"ts": "2026-11-30T20:00:06Z", "host": "node4", "event": "peer_removed", "peer": "node5"},  # other peer
        {"ts": "2026-11-30T20:00:06Z", "host": "node5", "event": "peer_added", "peer": "node3"},  # other event
    ]
    assert spread(events, "peer_removed", "node3", since) == [("node1", 6.0), ("node2", 5.5)]


def test_a_result_marks_its_begin_and_end_and_the_first_failure_ends_the_scenario():
    step = Step("crash", "node3 crashes", "removed everywhere")
    started = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)
    passed = Result(step, Outcome(True, "removed after 5.6 s"), started, 9.25)
    begin, end = passed.markers
    assert begin["phase"] == "begin" and begin["ts"] == "2026-11-30T20:00:00.000000Z"
    assert begin["expect"] == "removed everywhere" and begin["title"] == "node3 crashes"
    assert end == {"ts": "2026-11-30T20:00:09.250000Z", "host": "demo", "event": "demo_step", "step": "crash",
                   "phase": "end", "outcome": "passed", "duration": 9.25, "seen": "removed after 5.6 s"}
    scenario = Scenario([passed])
    assert scenario.failed is None
    failed = Result(Step("ping", "ping", "all answer"), Outcome(False, "1 of 2"), started, 1.0)
    scenario.results.append(failed)
    assert scenario.failed is failed and len(scenario.markers) == 4
    assert summary(scenario.results) == [("crash", "passed", "9.2 s", "removed after 5.6 s"),
                                         ("ping", "FAILED", "1.0 s", "1 of 2")]


def test_the_as_built_drawing_must_show_the_mesh_and_not_a_node_that_left():
    svg = '<text>node1</text><text>100.64.0.1</text><text>node10</text><text>node4</text>'
    assert diagram_outcome("a.svg", svg, ["node1", "node10"], ["node5"]) == Outcome(
        True, "a.svg: the 2 nodes in the mesh, the control plane and their tunnels")
    assert diagram_outcome("a.svg", svg, ["node1", "node2"], ["node4"]) == Outcome(
        False, "a.svg lacks node2; still shows node4, which left")
