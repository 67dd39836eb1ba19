"""The timeline merge: every host's log lines and the step markers, in time order, nothing dropped."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from demo.timeline import Log, events_of, from_jsonl, merge, parse_ts, step_marker, timeline, to_jsonl

FALLBACK = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)


def line(ts: str, event: str, **fields) -> str:
    return json.dumps({"ts": ts, "host": fields.pop("host", "node1"), "level": "INFO", "event": event, **fields})


def test_events_keep_their_fields_and_learn_their_program():
    log = Log("node1", "meshagent", line("2026-11-30T20:00:01.000001Z", "peer_added", peer="node2", revision=3))
    [event] = events_of(log, FALLBACK)
    assert event == {"ts": "2026-11-30T20:00:01.000001Z", "host": "node1", "level": "INFO", "event": "peer_added",
                     "peer": "node2", "revision": 3, "program": "meshagent"}


def test_a_traceback_is_kept_as_raw_lines_at_the_time_of_the_event_before_it():
    text = "\n".join([line("2026-11-30T20:00:01.5Z", "apply_failed", reason="boom"),
                      "Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: boom",
                      line("2026-11-30T20:00:03Z", "apply_noop")])
    events = events_of(Log("node2", "meshagent", text), FALLBACK)
    assert [e["event"] for e in events] == ["apply_failed", "raw", "raw", "raw", "apply_noop"]
    raw = events[1:4]
    assert [e["line"] for e in raw] == ["Traceback (most recent call last):", '  File "x.py", line 1',
                                        "ValueError: boom"]
    assert {e["ts"] for e in raw} == {"2026-11-30T20:00:01.500000Z"}
    assert {e["host"] for e in raw} == {"node2"} and {e["program"] for e in raw} == {"meshagent"}
    assert {e["ts_from"] for e in raw} == {"the event before"}


def test_raw_lines_before_any_event_take_the_next_events_time_and_a_log_without_events_the_fallback():
    lead = events_of(Log("n", "meshchat", "starting...\n" + line("2026-11-30T20:00:05Z", "chat_started")), FALLBACK)
    assert lead[0]["event"] == "raw" and lead[0]["ts"] == "2026-11-30T20:00:05.000000Z"
    assert lead[0]["ts_from"] == "the next event"
    alone = events_of(Log("n", "meshchat", "no json here\n{not json either\n"), FALLBACK)
    assert [e["line"] for e in alone] == ["no json here", "{not json either"]
    assert {e["ts"] for e in alone} == {"2026-11-30T20:00:00.000000Z"}


def test_json_that_is_not_an_event_is_raw_too():
    text = "\n".join(['{"ts": "soon", "event": "x"}', '["a list"]', '{"ts": "2026-11-30T20:00:00Z"}', "42"])
    events = events_of(Log("h", "p", text), FALLBACK)
    assert [e["event"] for e in events] == ["raw"] * 4


def test_a_line_without_host_takes_the_logs_host():
    [event] = events_of(Log("control", "meshvpn-control", '{"ts": "2026-11-30T20:00:00Z", "event": "x"}'), FALLBACK)
    assert event["host"] == "control"


def test_merge_orders_by_time_across_hosts_and_keeps_file_order_for_equal_times():
    a = events_of(Log("node1", "meshagent", "\n".join([
        line("2026-11-30T20:00:02Z", "a2"), line("2026-11-30T20:00:04Z", "a4")])), FALLBACK)
    b = events_of(Log("node2", "meshagent", "\n".join([
        line("2026-11-30T20:00:01Z", "b1", host="node2"), line("2026-11-30T20:00:04Z", "b4", host="node2"),
        line("2026-11-30T20:00:04Z", "b4bis", host="node2")])), FALLBACK)
    assert [e["event"] for e in merge(a, b)] == ["b1", "a2", "a4", "b4", "b4bis"]


def test_offsets_other_than_z_are_ordered_by_the_instant():
    assert parse_ts("2026-11-30T21:00:00+01:00") == parse_ts("2026-11-30T20:00:00Z")
    early = {"ts": "2026-11-30T20:30:00+01:00", "event": "early"}  # 19:30 UTC
    late = {"ts": "2026-11-30T20:00:00Z", "event": "late"}
    assert [e["event"] for e in merge([late], [early])] == ["early", "late"]


def test_step_markers_sit_among_the_events_they_caused():
    begin = step_marker(datetime(2026, 11, 30, 20, 0, 3, tzinfo=UTC), "crash", "begin", expect="removed everywhere")
    end = step_marker(datetime(2026, 11, 30, 20, 0, 9, tzinfo=UTC), "crash", "end", outcome="passed", duration=6.0)
    logs = [Log("node1", "meshagent", "\n".join([line("2026-11-30T20:00:01Z", "before"),
                                                 line("2026-11-30T20:00:08Z", "peer_removed", peer="node3"),
                                                 line("2026-11-30T20:00:10Z", "after")]))]
    merged = timeline(logs, [begin, end], FALLBACK)
    assert [(e["event"], e.get("phase")) for e in merged] == [
        ("before", None), ("demo_step", "begin"), ("peer_removed", None), ("demo_step", "end"), ("after", None)]
    assert merged[1] == {"ts": "2026-11-30T20:00:03.000000Z", "host": "demo", "event": "demo_step", "step": "crash",
                         "phase": "begin", "expect": "removed everywhere"}


def test_jsonl_round_trips_one_object_a_line():
    events = [{"ts": "2026-11-30T20:00:00.000000Z", "host": "h", "event": "x", "text": "a\nb <é>"}]
    text = to_jsonl(events)
    assert text.count("\n") == 1 and from_jsonl(text) == events
