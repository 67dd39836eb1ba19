"""The timeline as one self-contained HTML page: filterable by host, event and free text.

Owns the page's rows (pure: timeline events in, plain rows out) and its rendering with the Jinja2
template `templates/timeline.html.j2`. Every value of a log line is untrusted: the environment
autoescapes everything, and the page fetches nothing (inline CSS and script, a CSP forbidding
any load). No file or clock here: the caller writes the text.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import jinja2

from demo.timeline import STEP, parse_ts

SHOWN_ELSEWHERE = frozenset({"ts", "host", "event", "program"})


@dataclass(frozen=True)
class Row:
    clock: str  # HH:MM:SS.mmm UTC
    since_start: str  # +seconds since the first event
    host: str
    event: str
    program: str
    fields: tuple[tuple[str, str], ...]
    step: str | None = None  # the step, for a marker
    phase: str | None = None  # begin or end, for a marker
    outcome: str | None = None  # passed or failed, for an end marker


def text_of(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def rows(events: Sequence[dict]) -> list[Row]:
    times = [parse_ts(event.get("ts")) for event in events]
    start = min((t for t in times if t is not None), default=None)
    out = []
    for event, at in zip(events, times, strict=True):
        fields = tuple((key, text_of(value)) for key, value in event.items()
                       if key not in SHOWN_ELSEWHERE and not (key == "level" and value == "INFO"))
        marker = event.get("event") == STEP
        out.append(Row(
            clock=at.strftime("%H:%M:%S.%f")[:-3] if at else "?",
            since_start=f"+{(at - start).total_seconds():.3f}" if at and start else "",
            host=text_of(event.get("host", "")), event=text_of(event.get("event", "")),
            program=text_of(event.get("program", "")), fields=fields,
            step=text_of(event.get("step")) if marker else None,
            phase=text_of(event.get("phase")) if marker else None,
            outcome=text_of(event.get("outcome")) if marker and "outcome" in event else None))
    return out


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("demo", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(events: Sequence[dict], title: str, generated: datetime) -> str:
    table = rows(events)
    return environment().get_template("timeline.html.j2").render(
        title=title, rows=table, generated=generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
        hosts=sorted({row.host for row in table}), events=sorted({row.event for row in table}),
        start=table[0].clock if table else "")
