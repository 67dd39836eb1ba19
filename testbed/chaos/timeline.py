"""A chaos run's timeline: its faults (as the demo's step markers: applied, then healed with an
outcome) and its violations, merged with every host's log, as JSON lines and the demo's page.
Pure: times, faults and log texts in, events and HTML out; the runner reads and writes the files.

A fault passes when no violation came while it was live or in the offline threshold after its
heal (the time its effects may take to settle); the page lists every fault with its outcome.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePath

from demo.page import render
from demo.timeline import STEP, Log, timeline, to_jsonl
from meshcommon.plumbing.events import iso_utc
from testbed.chaos.invariants import Violation
from testbed.chaos.schedule import Fault

HOST = "chaos"


def fault_markers(number: int, fault: Fault, applied: float, healed: float, violations: list[Violation],
                  wall: float, threshold: float) -> list[dict]:
    """The begin and end markers of the run's `number`-th fault, applied and healed at these wall
    times (seconds since the epoch); `wall` is the run's start, which violations' times count from."""
    step = f"{number}-{fault.kind}-{fault.target}"
    during = [v for v in violations if applied - wall <= v.t <= healed - wall + threshold]
    seen = ", ".join(sorted({v.invariant for v in during})) or "no violation"
    return [
        {"ts": iso_utc(applied), "host": HOST, "event": STEP, "step": step, "phase": "begin",
         "title": f"{fault.kind} on {fault.target}", "expect": f"healed after {fault.hold:g} s, every invariant holds"},
        {"ts": iso_utc(healed), "host": HOST, "event": STEP, "step": step, "phase": "end",
         "outcome": "failed" if during else "passed", "duration": round(healed - applied, 1), "seen": seen},
    ]


def violation_events(violations: list[Violation], wall: float) -> list[dict]:
    return [{"ts": iso_utc(wall + max(v.t, 0.0)), "host": HOST, "event": "chaos_violation", "level": "ERROR",
             **v.to_json()} for v in violations]


def log_of(relative: PurePath, text: str) -> Log:
    """A log of the run's folder as the timeline names it: `node1.log` is node1's agent,
    `state-node1/wireguard-go.log` its wireguard-go, `control1/control-PORT.log` a control plane."""
    if relative.parts[0].startswith("control"):
        return Log(relative.parts[0], "meshctl", text)
    if relative.parts[0].startswith("state-"):
        return Log(relative.parts[0].removeprefix("state-").split(".")[0], relative.stem, text)
    return Log(relative.stem, "meshagent" if relative.parent == PurePath(".") else relative.stem, text)


def pages(logs: list[Log], markers: list[dict], title: str, generated: float) -> tuple[str, str]:
    """The merged timeline as JSON lines, and as the demo's page."""
    moment = datetime.fromtimestamp(generated, UTC)
    events = timeline(logs, markers, moment)
    return to_jsonl(events), render(events, title, moment)
