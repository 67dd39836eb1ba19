"""The demo's step model: what a step expects, what it saw, and how each check is judged.

Owns the verdicts. Pure: the runner (`demo.run`) does the I/O and hands its observations here
(a playbook's exit code and output, ping results, a chat daemon's answer); these functions say
whether the outcome holds and what to tell the reader. No subprocess, no network, no clock.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import permutations

from demo.timeline import step_marker

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A fault playbook reports its outcome in a debug or assert message starting with its name:
#   "msg": "crash_node: node3 (100.64.0.3) removed from node1's WireGuard config after 5.6 s ..."
REPORT = re.compile(r'"msg": "((?:[a-z_]+): .*)"\s*$')


@dataclass(frozen=True)
class Step:
    name: str  # short, unique: the `step` of its markers
    title: str  # what happens, for the narration
    expect: str  # what must hold afterwards


@dataclass(frozen=True)
class Outcome:
    ok: bool
    seen: str  # what was seen, one or a few lines
    details: tuple[str, ...] = ()  # more lines, e.g. the playbook's reports


@dataclass(frozen=True)
class Result:
    step: Step
    outcome: Outcome
    started: datetime
    duration: float  # seconds

    @property
    def markers(self) -> list[dict]:
        """The step's begin and end markers for the timeline."""
        end = self.started + timedelta(seconds=self.duration)
        return [step_marker(self.started, self.step.name, "begin", title=self.step.title, expect=self.step.expect),
                step_marker(end, self.step.name, "end", outcome="passed" if self.outcome.ok else "failed",
                            duration=round(self.duration, 3), seen=self.outcome.seen)]


@dataclass
class Scenario:
    """The results so far; the first failed step ends the demo."""

    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> Result | None:
        return next((result for result in self.results if not result.outcome.ok), None)

    @property
    def markers(self) -> list[dict]:
        return [marker for result in self.results for marker in result.markers]


def reports(output: str) -> list[str]:
    """The outcome messages a fault playbook printed (`crash_node: ...`), colour codes removed."""
    found = []
    for line in ANSI.sub("", output).splitlines():
        match = REPORT.search(line)
        if match:
            found.append(json.loads(f'"{match.group(1)}"'))
    return found


def failures(output: str) -> list[str]:
    """Ansible's lines about what failed (`fatal: [...]`, `failed: [...]`, the recap's failed hosts)."""
    lines = ANSI.sub("", output).splitlines()
    wanted = [line.strip() for line in lines
              if line.startswith(("fatal:", "failed:", "ERROR!")) or re.search(r"failed=[1-9]", line)]
    return [line[:400] for line in wanted]


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def recap(output: str) -> str:
    """The play recap in one line: how many hosts, and the changes and failures over all of them."""
    rows = [match.groups() for line in ANSI.sub("", output).splitlines() if (match := RECAP.match(line))]
    if not rows:
        return ""
    changed, unreachable, failed = (sum(int(row[i]) for row in rows) for i in (2, 3, 4))
    return f"{len(rows)} hosts, changed={changed} unreachable={unreachable} failed={failed}"


def playbook_outcome(name: str, returncode: int, output: str) -> Outcome:
    """A playbook's verdict: it asserts its own outcome, so its exit code is the verdict."""
    told = reports(output)
    if returncode == 0:
        own = [line for line in told if line.startswith(f"{name}:")]
        seen = (own or told or [f"{name}: {recap(output) or 'ok'}"])[-1]
        agreeing = [line for line in told if line.startswith("every_peer:")]
        if agreeing and own:
            seen += f"; every_peer: all {len(agreeing)} other nodes agree"
        return Outcome(True, seen, tuple(told))
    return Outcome(False, f"{name} exited {returncode}", tuple(failures(output)[-12:] or told))


def pairs(nodes: Iterable[str]) -> list[tuple[str, str]]:
    """Every ordered pair of distinct nodes: who pings whom."""
    return list(permutations(sorted(nodes), 2))


def pings_outcome(answered: Mapping[tuple[str, str], bool], expect_answer: bool = True) -> Outcome:
    """All-pairs ping: every pair answered (or, during a cut, none of the given pairs did)."""
    wrong = sorted(pair for pair, ok in answered.items() if ok != expect_answer)
    verb = "answered" if expect_answer else "got no answer"
    if not answered:
        return Outcome(False, "no pair was pinged")
    if wrong:
        listed = ", ".join(f"{a}->{b}" for a, b in wrong)
        return Outcome(False, f"{len(answered) - len(wrong)} of {len(answered)} pairs {verb}; not: {listed}")
    return Outcome(True, f"{len(answered)} of {len(answered)} pairs {verb}")


def chat_outcome(sender: str, receiver: str, status: int, answer: object, expect: str) -> Outcome:
    """A message sent through the sender's chat API: its state must be `expect` (delivered or failed).
    A failure must say why (the reason the UI shows)."""
    row = answer if isinstance(answer, dict) else {}
    state, reason = row.get("state"), row.get("reason")
    if status != 200:
        told = row.get("description") or row.get("title") or answer
        return Outcome(False, f"{sender} -> {receiver}: HTTP {status}: {told}")
    if state != expect:
        return Outcome(False, f"{sender} -> {receiver}: {state} ({reason}), expected {expect}")
    if expect == "failed" and not reason:
        return Outcome(False, f"{sender} -> {receiver}: failed without a reason")
    return Outcome(True, f"{sender} -> {receiver}: {state}" + (f" ({reason})" if reason else ""))


def received_outcome(receiver: str, text: str, history: object) -> Outcome:
    """The receiver's history (its chat API) holds the message as received."""
    messages = history.get("messages", []) if isinstance(history, dict) else []
    got = [m for m in messages if isinstance(m, dict) and m.get("text") == text and m.get("direction") == "in"]
    if not got:
        return Outcome(False, f"{receiver} has no received message {text!r}")
    return Outcome(True, f"{receiver} received {text!r}")


def both(first: Outcome, second: Outcome) -> Outcome:
    return Outcome(first.ok and second.ok, f"{first.seen}; {second.seen}", first.details + second.details)


def diagram_outcome(name: str, svg: str, present: Iterable[str], absent: Iterable[str]) -> Outcome:
    """The as-built drawing names every node still in the mesh and none that left (a node's name is
    the first line of its box: `>NAME<` in Graphviz's SVG)."""
    present, absent = list(present), list(absent)
    missing = [node for node in present if f">{node}<" not in svg]
    stale = [node for node in absent if f">{node}<" in svg]
    if missing or stale:
        told = [*([f"lacks {', '.join(missing)}"] if missing else []),
                *([f"still shows {', '.join(stale)}, which left"] if stale else [])]
        return Outcome(False, f"{name} {'; '.join(told)}")
    return Outcome(True, f"{name}: the {len(present)} nodes in the mesh, the control plane and their tunnels")


def spread(events: Iterable[Mapping], event: str, subject: str | None, since: datetime) -> list[tuple[str, float]]:
    """For each host that logged `event` about `subject` (its `peer` name) after `since`: the seconds
    from `since` to its first such line, in host order. How far a change spread, and how fast."""
    from demo.timeline import parse_ts
    first: dict[str, float] = {}
    for line in events:
        at = parse_ts(line.get("ts"))
        if line.get("event") != event or line.get("peer") != subject or at is None or at < since:
            continue
        first.setdefault(str(line.get("host")), (at - since).total_seconds())
    return sorted(first.items())


def summary(results: Iterable[Result]) -> list[tuple[str, str, str, str]]:
    """One row per step: name, outcome, duration, what was seen."""
    return [(r.step.name, "passed" if r.outcome.ok else "FAILED", f"{r.duration:.1f} s", r.outcome.seen)
            for r in results]
