"""make demo's pieces without a lab: the fault playbooks' arguments, the timeline and page from a lab
directory's logs, the spread of a crash, the narration of a failure."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

from rich.console import Console

from demo import effects, run
from demo.effects import Lab
from demo.steps import Outcome, Result, Step

CRASH = Step("crash", "node3 crashes", "removed everywhere")
BEGAN = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)


def lab_with_logs(tmp_path) -> Lab:
    lab = Lab("mvtest", "10.213.99", tmp_path / "lab", tmp_path / "lab" / "hosts.yml")
    files = {
        "control/meshvpn-control.log": {"ts": "2026-11-30T20:00:06Z", "event": "node_offline", "node": "c3"},
        "node1/meshagent.log": {"ts": "2026-11-30T20:00:07Z", "event": "peer_removed", "peer": "node3"},
        "node1/meshagent.log.1": {"ts": "2026-11-30T19:59:00Z", "event": "peer_added", "peer": "node3"},
        "node2/meshagent.log": {"ts": "2026-11-30T20:00:06.5Z", "event": "peer_removed", "peer": "node3"},
    }
    for name, event in files.items():
        host, log = name.split("/")
        path = lab.host_dir(host) / "var_log_meshvpn" / log
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**event, "host": host}) + "\nTraceback: not json\n")
    (lab.host_dir("node1") / "var_log_meshvpn" / "supervisord.log").write_text("2026-11-30 20:00:00,1 INFO spawned\n")
    return lab


def test_the_timeline_and_page_come_from_every_program_log_of_every_host(tmp_path):
    lab = lab_with_logs(tmp_path)
    demo = run.Demo(lab, tmp_path / "out", Console(file=StringIO()))
    (tmp_path / "out").mkdir()
    demo.started = BEGAN
    demo.scenario.results.append(Result(CRASH, Outcome(True, "removed"), BEGAN, 8.0))
    jsonl, html, events = demo.write_timeline()
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines == events
    assert [(e["host"], e["event"]) for e in lines] == [
        ("node1", "peer_added"), ("node1", "raw"), ("demo", "demo_step"), ("control", "node_offline"),
        ("control", "raw"), ("node2", "peer_removed"), ("node2", "raw"), ("node1", "peer_removed"), ("node1", "raw"),
        ("demo", "demo_step")]
    assert "spawned" not in jsonl.read_text()  # supervisord's own log is not a meshvpn program's
    assert "peer_removed" in html.read_text() and "Traceback: not json" in html.read_text()
    assert demo.spreads(events) == ["crash: peer_removed node3 logged by 2 nodes, seconds after the step began: "
                                    "node1 7.0, node2 6.5"]


def test_a_fault_gets_its_target_and_a_boolean_expectation(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(effects, "playbook", lambda lab, books, log, *extra, inventory=True:
                        calls.append((books, extra)) or (0, '    "msg": "crash_node: node3 removed after 5.0 s"'))
    demo = run.Demo(lab_with_logs(tmp_path), tmp_path / "out", Console(file=StringIO()))
    outcome = demo.fault("crash_node", "node3", everywhere=False)
    books, extra = calls[0]
    assert books == ["playbooks/fault/crash_node.yml", "playbooks/fault/every_peer.yml"]
    # A JSON boolean: the string "false" is true to the fault playbook's own `if fault_expect_present`.
    assert extra == ("-e", "target=node3", "-e", '{"fault_expect_present": false}')
    assert outcome.ok and outcome.seen == "crash_node: node3 removed after 5.0 s"


def test_a_failed_step_is_narrated_with_ansibles_words_intact_and_stops_the_demo(tmp_path):
    out = StringIO()
    demo = run.Demo(lab_with_logs(tmp_path), tmp_path / "out", Console(file=out, width=200))
    seen = "fatal: [localhost -> node1(10.213.90.11)]: FAILED!"
    try:
        demo.step(CRASH, lambda: Outcome(False, "crash_node exited 2", (seen,)))
    except run.StepFailed as stop:
        assert stop.result.step is CRASH
    else:
        raise AssertionError("a failed step must stop the demo")
    text = out.getvalue()
    assert "FAILED" in text and "expected: removed everywhere" in text and seen in text  # not eaten as markup
