"""The demo's timeline: every host's log lines and the demo's own step markers, merged in time order.

Owns turning log text into timeline events and ordering them. Pure: lines in, dicts out; no file,
no clock (the caller reads the logs and passes the times in). A line that is not a JSON event
(a traceback, a library's plain text) is kept as an event of kind `raw`, placed at the time of the
event before it in the same log (a traceback follows the line that announced it), never dropped.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from meshcommon.plumbing.events import iso_utc

RAW = "raw"
STEP = "demo_step"


@dataclass(frozen=True)
class Log:
    """One log file's text: which host wrote it, which program (file name without `.log`)."""

    host: str
    program: str
    text: str


def parse_ts(value: object) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_ts(moment: datetime) -> str:
    return iso_utc(moment.timestamp())


def _event(line: str) -> dict | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str) or parse_ts(data.get("ts")) is None:
        return None
    return data


def events_of(log: Log, fallback: datetime) -> list[dict]:
    """The events of one log, in file order. Raw lines take the time of the event before them (the
    event after them when none precedes, `fallback` when the log has no event at all)."""
    lines = [line for line in log.text.splitlines() if line.strip()]
    parsed = [_event(line) for line in lines]
    known = [moment for event in parsed if event is not None and (moment := parse_ts(event["ts"])) is not None]
    anchor, source = (known[0], "the next event") if known else (fallback, "no event in this log")
    out = []
    for line, event in zip(lines, parsed, strict=True):
        if event is None:
            out.append({"ts": as_ts(anchor), "host": log.host, "event": RAW, "program": log.program,
                        "line": line, "ts_from": source})
            continue
        anchor, source = parse_ts(event["ts"]) or anchor, "the event before"  # _event checked it parses
        if not isinstance(event.get("host"), str):
            event["host"] = log.host
        event["ts"] = as_ts(anchor)
        event.setdefault("program", log.program)
        out.append(event)
    return out


def merge(*streams: Iterable[dict]) -> list[dict]:
    """Every event of every stream in time order; events of the same time keep their stream's order."""
    indexed = [(parse_ts(event["ts"]), n, i, event)
               for n, stream in enumerate(streams) for i, event in enumerate(stream)]
    return [event for *_, event in sorted(indexed, key=lambda item: item[:3])]


def timeline(logs: Iterable[Log], markers: Iterable[dict], fallback: datetime) -> list[dict]:
    """The merged timeline of these logs and the demo's step markers."""
    return merge(list(markers), *(events_of(log, fallback) for log in logs))


def step_marker(at: datetime, step: str, phase: str, **fields: object) -> dict:
    """The demo's own event: a step begins (`phase` begin, with what it expects) or ends (`phase`
    end, with its outcome, duration and what was seen)."""
    return {"ts": as_ts(at), "host": "demo", "event": STEP, "step": step, "phase": phase, **fields}


def to_jsonl(events: Iterable[dict]) -> str:
    return "".join(json.dumps(event, ensure_ascii=False, default=str) + "\n" for event in events)


def from_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
