"""`make demo`: a fresh lab, the whole story of the mesh, narrated, each step timed and checked.

Owns the scenario (which step follows which, on which nodes) and its narration. The fault
playbooks inject the failures and assert their own outcomes; this adds only the checks they lack
(all-pairs ping, chat delivered or visibly failed, pings and chat while the control plane is
down). The first step whose outcome does not hold ends the demo with a non-zero exit, saying what
was expected and what was seen. Whatever happens, every host's logs are merged into
`OUT/timeline.jsonl` and `OUT/timeline.html`, and the demo's lab is destroyed (unless --keep).
Verdicts are `demo.steps`', effects `demo.effects`'.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from demo import effects, page, steps, timeline
from demo.effects import ROOT, Lab
from demo.steps import Outcome, Result, Scenario, Step

FAULTS = "playbooks/fault"
NODES = 5  # the lab's nodes; one more joins
# Steps whose effect every agent logs: the event and the peer it is about.
# A deleted peer's name is null in the agents' lines (docs/events.md): the leave is matched by that.
SPREAD: dict[str, tuple[str, str | None]] = {
    "crash": ("peer_removed", "node3"), "restart": ("peer_added", "node3"), "leave": ("peer_removed", None)}


def shown(path: Path) -> Path:
    """A path as the reader typed it: relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


class Demo:
    def __init__(self, lab: Lab, out: Path, console: Console):
        self.lab, self.out, self.console = lab, out, console
        self.scenario = Scenario()
        self.started = datetime.now(UTC)

    # -- running and narrating a step ------------------------------------------------------

    def step(self, step: Step, action: Callable[[], Outcome]) -> None:
        number = len(self.scenario.results) + 1
        self.console.rule(f"[bold]{number}. {escape(step.name)}[/]: {escape(step.title)}", align="left")
        self.console.print(f"  [dim]expected:[/] {escape(step.expect)}")
        started, clock = datetime.now(UTC), time.monotonic()
        try:
            with self.console.status(f"  {step.name} ..."):
                outcome = action()
        except Exception as exc:  # an effect that broke is a failed step, said as such
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        result = Result(step, outcome, started, time.monotonic() - clock)
        self.scenario.results.append(result)
        mark = "[green]passed[/]" if outcome.ok else "[bold red]FAILED[/]"
        self.console.print(f"  {mark} in {result.duration:.1f} s: {escape(outcome.seen)}", highlight=False)
        for line in outcome.details:
            self.console.print(f"    [dim]{escape(line)}[/]", highlight=False)
        if not outcome.ok:
            raise StepFailed(result)

    def play(self, name: str, playbooks: list[str], *extra: str, inventory: bool = True) -> Outcome:
        log = self.out / "ansible" / f"{len(self.scenario.results) + 1:02d}-{name}.log"
        code, output = effects.playbook(self.lab, playbooks, log, *extra, inventory=inventory)
        outcome = steps.playbook_outcome(name, code, output)
        return Outcome(outcome.ok, outcome.seen, (*outcome.details, f"ansible output: {shown(log)}"))

    def fault(self, name: str, target: str | None = None, *extra: str, everywhere: bool | None = None) -> Outcome:
        """A fault playbook, then (`everywhere`) every_peer.yml: every other node has (or lacks) the target."""
        books = [f"{FAULTS}/{name}.yml"] + ([f"{FAULTS}/every_peer.yml"] if everywhere is not None else [])
        args = [*(["-e", f"target={target}"] if target else []), *extra]
        if everywhere is not None:  # a boolean, not the string "false": the fault playbook reads it too
            args += ["-e", json.dumps({"fault_expect_present": everywhere})]
        return self.play(name, books, *args)

    # -- what the checks look at ------------------------------------------------------------

    def nodes(self) -> list[str]:
        return sorted(effects.groups(self.lab)["meshvpn_nodes"], key=lambda name: int(name.removeprefix("node")))

    def mesh_ips(self, nodes: list[str]) -> dict[str, str]:
        return {node: effects.identity(self.lab, node)["mesh_ip"] for node in nodes}

    def ping_all(self, nodes: list[str]) -> Outcome:
        return steps.pings_outcome(effects.pings(self.lab, steps.pairs(nodes), self.mesh_ips(nodes)))

    def chat(self, sender: str, receiver: str, text: str, expect: str = "delivered") -> Outcome:
        ips = self.mesh_ips([sender, receiver])
        status, answer = effects.Chat(self.lab, sender).send(ips[receiver], text)
        sent = steps.chat_outcome(sender, receiver, status, answer, expect)
        if not sent.ok or expect != "delivered":
            return sent
        history = effects.Chat(self.lab, receiver).history(ips[sender])
        return steps.both(sent, steps.received_outcome(receiver, text, history))

    def chat_within(self, sender: str, receiver: str, text: str, seconds: float) -> Outcome:
        """Delivered within `seconds` (a restarted chat daemon listens once its agent has the mesh IP)."""
        deadline, tries = time.monotonic() + seconds, 0
        while True:
            tries += 1
            outcome = self.chat(sender, receiver, f"{text} (try {tries})")
            if outcome.ok or time.monotonic() > deadline:
                return Outcome(outcome.ok, f"{outcome.seen} after {tries} send(s)", outcome.details)
            time.sleep(1)

    # -- the scenario -------------------------------------------------------------------------

    def run(self) -> None:
        self.step(Step("lab", f"build a fresh lab of {NODES} nodes and a control host (playbooks/lab.yml)",
                       f"hosts {self.lab.prefix}-control, {self.lab.prefix}-node1..{NODES} reachable over SSH"),
                  lambda: self.play("lab", ["playbooks/lab.yml"], "-e", f"lab_nodes={NODES}", inventory=False))
        self.step(Step("deploy", "deploy control plane, agents and chat with site.yml",
                       "site.yml succeeds: every node enrolled, control plane answering"),
                  lambda: self.play("deploy", ["site.yml"]))
        nodes = self.nodes()
        self.step(Step("ping", f"every node pings every other over its mesh IP ({len(nodes)} nodes)",
                       f"all {len(nodes) * (len(nodes) - 1)} ordered pairs answer"),
                  lambda: self.ping_all(nodes))
        self.step(Step("chat", "node1 sends node2 a chat message over the mesh",
                       "delivered (acknowledged by node2's daemon), and in node2's history as received"),
                  lambda: self.chat("node1", "node2", "hello node2, over WireGuard"))
        newcomer = f"node{len(nodes) + 1}"
        self.step(Step("join", f"{newcomer} joins: the lab grows and site.yml --limit {newcomer} deploys it",
                       f"{newcomer} in every other node's WireGuard config within 10 s"),
                  lambda: self.fault("join_node", newcomer, "-e", f"lab_nodes={len(nodes) + 1}", everywhere=True))
        nodes = self.nodes()
        self.step(Step("ping-joined", f"all pairs ping again, {newcomer} included",
                       f"all {len(nodes) * (len(nodes) - 1)} ordered pairs answer"),
                  lambda: self.ping_all(nodes))
        self.step(Step("crash", "node3 crashes (kill -9 of every process, its interface goes too)",
                       "removed from every other node's WireGuard config within 10 s"),
                  lambda: self.fault("crash_node", "node3", everywhere=False))
        self.step(Step("chat-crashed", "node1 sends node3 a message",
                       "the send fails visibly: state failed, with the reason"),
                  lambda: self.chat("node1", "node3", "are you there, node3?", expect="failed"))
        self.step(Step("restart", "node3 restarts", "same mesh IP, back in every other node's config within 15 s"),
                  lambda: self.fault("restart_node", "node3", everywhere=True))
        self.step(Step("chat-restarted", "node1 sends node3 a message again", "delivered within 30 s"),
                  lambda: self.chat_within("node1", "node3", "welcome back, node3", 30))
        self.step(Step("cut", "the underlay between node1 and node2 is cut (UDP dropped both ways)",
                       "both stay online; meshctl health names the pair within 120 s; node1 and node2 cannot ping"),
                  lambda: steps.both(self.fault("cut_pair", "node1", "-e", "peer=node2"),
                                     self.pings_between("node1", "node2", expect_answer=False)))
        self.step(Step("heal", "the cut is healed", "meshctl health drops the pair within 60 s; they ping again"),
                  lambda: steps.both(self.fault("heal_pair", "node1", "-e", "peer=node2"),
                                     self.pings_between("node1", "node2", expect_answer=True)))
        self.step(Step("control-down", "the control plane stops",
                       "every agent sees it unreachable; all pairs still ping; chat still delivers"),
                  lambda: self.control_down(nodes))
        self.step(Step("control-up", "the control plane starts again",
                       "every agent reconnects, every peer still online (grace period)"),
                  lambda: self.fault("control_up"))
        self.step(Step("leave", "node4 leaves gracefully (meshagent down --leave)",
                       "dropped by every other node at once (within 3 s at the first, 10 s at all)"),
                  lambda: self.fault("leave_node", "node4", everywhere=False))
        self.step(Step("asbuilt", "draw the mesh as built (meshctl diagram)",
                       "demo/out/asbuilt.svg with every node still in the mesh, and not node4"),
                  lambda: self.asbuilt([node for node in self.nodes() if node != "node4"], ["node4"]))

    def pings_between(self, a: str, b: str, expect_answer: bool) -> Outcome:
        ips = self.mesh_ips([a, b])
        answered = effects.pings(self.lab, [(a, b), (b, a)], ips)
        return steps.pings_outcome(answered, expect_answer=expect_answer)

    def control_down(self, nodes: list[str]) -> Outcome:
        down = self.fault("control_down")
        if not down.ok:
            return down
        return steps.both(steps.both(down, self.ping_all(nodes)),
                          self.chat("node2", "node5", "the control plane is down and this still arrives"))

    def asbuilt(self, present: list[str], absent: list[str]) -> Outcome:
        control, variables = next(iter(effects.groups(self.lab)["meshvpn_control"].items()))
        done = effects.diagram(self.lab, control, variables["ansible_host"], self.out / "asbuilt")
        svg = self.out / "asbuilt.svg"
        if done.returncode != 0 or not svg.exists():
            return Outcome(False, f"meshctl diagram exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return steps.diagram_outcome(str(shown(svg)), svg.read_text(), present, absent)

    # -- after the scenario -----------------------------------------------------------------------

    def write_timeline(self) -> tuple[Path, Path, list[dict]]:
        events = timeline.timeline(effects.logs(self.lab), self.scenario.markers, self.started)
        jsonl, html = self.out / "timeline.jsonl", self.out / "timeline.html"
        jsonl.write_text(timeline.to_jsonl(events))
        html.write_text(page.render(events, "meshvpn demo: timeline of every host", datetime.now(UTC)))
        return jsonl, html, events

    def spreads(self, events: list[dict]) -> list[str]:
        """How a crash, a restart and a leave reached each node, read from the agents' own logs."""
        lines = []
        for result in self.scenario.results:
            if result.step.name not in SPREAD:
                continue
            event, subject = SPREAD[result.step.name]
            reached = steps.spread(events, event, subject, result.started)
            lines.append(f"{result.step.name}: {event} {subject or '(deleted, unnamed)'} logged by {len(reached)} "
                         f"nodes, seconds after the step began: " + ", ".join(f"{h} {t:.1f}" for h, t in reached))
        return lines

    def destroy(self) -> None:
        with self.console.status("  destroying the demo lab ..."):
            code, _ = effects.playbook(self.lab, ["playbooks/lab_destroy.yml"], self.out / "ansible" / "destroy.log",
                                       inventory=False)
        self.console.print("lab destroyed" if code == 0 else
                           f"[red]lab_destroy.yml exited {code}: see {self.out / 'ansible' / 'destroy.log'}[/]")

    def summary(self) -> None:
        table = Table(title="meshvpn demo", show_lines=False)
        for column in ("step", "outcome", "time", "seen"):
            table.add_column(column, overflow="fold")
        for row in steps.summary(self.scenario.results):
            table.add_row(*map(escape, row), style=None if row[1] == "passed" else "bold red")
        self.console.print(table)


class StepFailed(Exception):
    def __init__(self, result: Result):
        super().__init__(result.step.name)
        self.result = result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="mvdemo", help="namespace prefix of the demo lab (not make up's mvlab)")
    parser.add_argument("--subnet", default="10.213.90", help="the demo lab's /24, first three octets")
    parser.add_argument("--lab-dir", type=Path, default=ROOT / ".lab-demo")
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "out")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args(argv)
    lab = Lab(args.prefix, args.subnet, args.lab_dir.resolve(), args.lab_dir.resolve() / "hosts.yml")
    console = Console(highlight=False)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    demo = Demo(lab, args.out.resolve(), console)
    failed: Result | None = None
    try:
        demo.run()
    except StepFailed as stop:
        failed = stop.result
    finally:
        if lab.lab_dir.exists():
            jsonl, html, events = demo.write_timeline()
            console.rule("[bold]timeline", align="left")
            console.print(f"  {len(events)} events from every host and the demo's steps: {shown(jsonl)}, "
                          f"{shown(html)}")
            for line in demo.spreads(events):
                console.print(f"  {escape(line)}", highlight=False)
        if not args.keep:
            demo.destroy()
        else:
            console.print(f"lab kept: inventory {lab.inventory}; remove it with "
                          f"make demo-down")
    demo.summary()
    if failed:
        console.print(f"[bold red]demo FAILED at step {failed.step.name}[/]: expected {escape(failed.step.expect)}; "
                      f"seen {escape(failed.outcome.seen)}", highlight=False)
        for line in failed.outcome.details:
            console.print(f"  {escape(line)}", highlight=False)
        return 1
    total = sum(result.duration for result in demo.scenario.results)
    console.print(f"[bold green]demo passed[/]: {len(demo.scenario.results)} steps in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
