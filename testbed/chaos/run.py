"""The chaos soak on the namespace lab: a mesh of agents on wireguard-go and one control plane
(SQLite), the schedule's faults applied and healed on time, the mesh observed from outside every
second and each snapshot judged (testbed.chaos.invariants), then the logs and the processes'
growth. Owns the faults' effects on the lab (processes killed and started, a nftables table of its
own in each host's namespace) and the report; decides nothing (schedule) and judges nothing
(invariants), beyond the two whole-run checks that read logs and processes (clean, bounded).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from testbed import lab as labs
from testbed.chaos import timeline as chaos_timeline
from testbed.chaos.invariants import INVARIANTS, Checker, HostView, Member, Snapshot, Violation
from testbed.chaos.schedule import Fault, kinds_for, schedule
from testbed.control_process import ControlProcess
from testbed.meshlab import MESHAGENT, Node, converged, on_lab, wait_for
from testbed.nft import chaos_ruleset

# The kinds this runner applies on the namespace lab (the schedule knows more).
APPLIED = ("agent_crash", "power_off", "pair_cut", "loss_one_way", "loss_two_way", "control_isolated",
           "leave", "join", "control_restart", "control_cut_all")
LOSS_PERCENT = 30
PINGS_PER_SECOND = 8  # ordered pairs sampled each second
ERROR_LINE = re.compile(r'"level": "(ERROR|CRITICAL)"|Traceback \(most recent call last\)')
GROWTH = {"rss_kb": (1.25, 16 * 1024), "fds": (1.0, 32)}  # allowed: factor of the start, plus this much


@dataclass
class HostFaults:
    """What the chaos table of one host drops now."""
    loss_in: int = 0
    loss_out: int = 0
    control_blocked: set[str] = field(default_factory=set)  # the faults that block it (isolated, cut all)


class Chaos:
    def __init__(self, lab: labs.Lab, control: ControlProcess, folder: Path, names: list[str], seed: int):
        self.lab, self.control, self.folder = lab, control, folder
        self.rng = random.Random(seed)  # ping sampling: the same seed samples the same pairs
        self.token_file = folder / "join.token"
        self.nodes: dict[str, Node] = {}
        self.names = names
        self.host_faults: dict[str, HostFaults] = {}
        self.lives: Counter[str] = Counter()  # name -> times it left and joined again (its state dirs)

    # -- the mesh

    def build(self, timeout: float = 60) -> None:
        self.token_file.write_text(self.control.join_token() + "\n")
        for name in self.names:
            self._enrol(name)
        wait_for(lambda: converged(list(self.nodes.values())), timeout, what="the mesh to converge before the faults")

    def _enrol(self, name: str) -> None:
        """Start an agent on host `name` (made if new), from a fresh state directory if it left before."""
        host = next((host for host in self.lab.hosts if host.name == name), None) or self.lab.add_host(name)
        state = self.folder / (f"state-{name}" if not self.lives[name] else f"state-{name}.{self.lives[name]}")
        self.nodes[name] = Node(host, state, [self.control.url], self.token_file).start()
        self.host_faults.setdefault(name, HostFaults())

    # -- faults

    def apply(self, fault: Fault) -> None:
        getattr(self, f"_{fault.kind}")(fault, heal=False)

    def heal(self, fault: Fault) -> None:
        getattr(self, f"_{fault.kind}")(fault, heal=True)

    def _agent_crash(self, fault: Fault, heal: bool) -> None:
        node = self.nodes[fault.target]
        if heal:
            node.start()
        elif node.proc and node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGKILL)  # the agent alone: its wireguard-go keeps the data plane
            node.proc.wait()

    def _power_off(self, fault: Fault, heal: bool) -> None:
        node = self.nodes[fault.target]
        if heal:
            node.start()
        else:
            node.host.crash()  # every process of the host: the agent, wireguard-go and the interface
            if node.proc:
                node.proc.wait()

    def _pair_cut(self, fault: Fault, heal: bool) -> None:
        a, b = (self.nodes[name].host for name in fault.nodes)
        (self.lab.heal if heal else self.lab.cut)(a, b)

    def _loss_one_way(self, fault: Fault, heal: bool) -> None:
        self.host_faults[fault.target].loss_in = 0 if heal else LOSS_PERCENT
        self._apply_table(fault.target)

    def _loss_two_way(self, fault: Fault, heal: bool) -> None:
        faults = self.host_faults[fault.target]
        faults.loss_in = faults.loss_out = 0 if heal else LOSS_PERCENT
        self._apply_table(fault.target)

    def _control_isolated(self, fault: Fault, heal: bool) -> None:
        self._block_control(fault.target, f"{fault.kind}@{fault.t}", heal)

    def _control_cut_all(self, fault: Fault, heal: bool) -> None:
        for name in self.nodes:
            self._block_control(name, f"{fault.kind}@{fault.t}", heal)

    def _block_control(self, name: str, why: str, heal: bool) -> None:
        blocked = self.host_faults[name].control_blocked
        if heal:
            blocked.discard(why)
        else:
            blocked.add(why)
        self._apply_table(name)

    def _apply_table(self, name: str) -> None:
        faults, host = self.host_faults[name], self.nodes[name].host
        control = (self.lab.gateway, self.control.port) if faults.control_blocked else None
        labs.sh("ip", "netns", "exec", host.netns, "nft", "-f", "-",
                stdin=chaos_ruleset(faults.loss_in, faults.loss_out, control))

    def _leave(self, fault: Fault, heal: bool) -> None:
        if heal:
            self.lives[fault.target] += 1  # enrols again as a new node, from a fresh state directory
            self._enrol(fault.target)
            return
        node = self.nodes[fault.target]
        node.stop()
        node.host.run(MESHAGENT, "down", "--state-dir", str(node.state_dir), "--leave", check=False)

    def _join(self, fault: Fault, heal: bool) -> None:
        if not heal:  # a new node joins and stays
            self._enrol(fault.target)

    def _control_restart(self, fault: Fault, heal: bool) -> None:
        if heal:
            self.control.start()
        elif self.control.proc and self.control.proc.poll() is None:
            os.killpg(self.control.proc.pid, signal.SIGKILL)
            self.control.proc.wait()

    # -- observing

    def observe(self, t: float) -> Snapshot:
        members = self.members()
        hosts = tuple(self._view(name, node) for name, node in self.nodes.items())
        return Snapshot(t, members, hosts, self._pings())

    def members(self) -> tuple[Member, ...] | None:
        """The control plane's node list (None: it did not answer within a second)."""
        try:
            answer = httpx.get(self.control.url + "/v1/nodes", headers=self.control.admin, timeout=1.0)
            answer.raise_for_status()
        except httpx.HTTPError:
            return None
        return tuple(Member(n["node_id"], n["name"], n["public_key"], n["mesh_ip"], n["online"])
                     for n in answer.json()["nodes"])

    def _view(self, name: str, node: Node) -> HostView:
        done = node.host.run("wg", "show", "mesh0", "allowed-ips", check=False)
        peers = (dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
                 if done.returncode == 0 else None)
        return HostView(name, peers, frozenset(node.host.routes()), _cached_revision(node))

    def _pings(self) -> dict[tuple[str, str], bool]:
        """A sample of ordered pairs, pinged at once (one datagram, a second's wait)."""
        known = {name: node for name, node in self.nodes.items() if (node.state_dir / "node.json").exists()}
        pairs = [(a, b) for a in known for b in known if a != b]
        sample = self.rng.sample(pairs, min(PINGS_PER_SECOND, len(pairs)))
        running = {}
        for a, b in sample:
            address = json.loads((known[b].state_dir / "node.json").read_text())["mesh_ip"]
            running[(a, b)] = subprocess.Popen([*known[a].host.prefix(), "ping", "-n", "-q", "-c", "1", "-W", "1",
                                                address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {pair: proc.wait() == 0 for pair, proc in running.items()}

    def processes(self) -> dict[str, dict]:
        """Each running agent's and the control plane's pid, RSS and open descriptors."""
        found = {f"agent:{name}": node.proc.pid for name, node in self.nodes.items()
                 if node.proc and node.proc.poll() is None}
        if self.control.proc and self.control.proc.poll() is None:
            found["control"] = self.control.proc.pid
        return {what: usage for what, pid in found.items() if (usage := _usage(pid))}

    def logs(self) -> list[Path]:
        return sorted(self.folder.rglob("*.log"))


def _cached_revision(node: Node) -> int | None:
    try:
        return json.loads((node.state_dir / "netmap.json").read_text())["header"]["revision"]
    except (OSError, ValueError, KeyError):
        return None


def _usage(pid: int) -> dict | None:
    try:
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return {"pid": pid, "rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (OSError, StopIteration):
        return None


Meddling = list[tuple[float, Callable[["Chaos"], None]]]


def soak(seed: int, duration: float, count: int, report_path: Path, kinds: list[str] | None = None,
         threshold: float = 6.0, log=print, meddling: Meddling = ()) -> dict:
    """One run: the mesh built, the schedule applied, every second observed and judged; the report
    (also written to `report_path`, with the run's logs and its timeline beside it). `kinds`: the
    kinds drawn (None: every kind applied here; empty: none). `meddling`: what someone does to the
    lab behind the schedule's back, at its time (the tests that prove the soak can fail)."""
    names = [f"node{i}" for i in range(1, count + 1)]
    chosen = kinds_for(ha=False, only=list(APPLIED) if kinds is None else kinds)
    unapplied = sorted(set(chosen) - set(APPLIED))
    if unapplied:
        raise ValueError(f"the namespace lab does not apply {', '.join(unapplied)} yet")
    faults = schedule(seed, duration, names, threshold, chosen)
    checker = Checker(faults, threshold, settle=threshold + 4)
    report: dict = {"seed": seed, "duration": duration, "nodes": count, "threshold": threshold,
                    "schedule": [fault.to_json() for fault in faults],
                    "faults_by_kind": dict(Counter(fault.kind for fault in faults))}
    out = report_path.parent
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshvpn-chaos-") as temp, labs.Lab() as lab:
        folder = Path(temp)
        control = on_lab(lab, folder / "control", heartbeat_interval=threshold / 3, offline_after=threshold).start()
        chaos = Chaos(lab, control, folder, names, seed)
        try:
            chaos.build()
            log(f"chaos: seed {seed}, {count} nodes converged; {len(faults)} faults over {duration:.0f} s")
            before = chaos.processes()
            wall, times = drive(chaos, checker, faults, list(meddling), duration, log)
            after = chaos.processes()
            checker.violations += clean(chaos.logs(), wall, faults, threshold, checker)
            checker.violations += bounded(before, after, duration, checker)
        finally:
            for node in chaos.nodes.values():
                node.stop()
            control.stop()
            keep_logs(folder, out / f"logs-{seed}")
    markers = [marker for number, fault in enumerate(faults, 1) if fault in times
               for marker in chaos_timeline.fault_markers(number, fault, *times[fault], checker.violations, wall,
                                                          threshold)]
    markers += chaos_timeline.violation_events(checker.violations, wall)
    logs = [chaos_timeline.log_of(path.relative_to(out / f"logs-{seed}"), path.read_text(errors="replace"))
            for path in sorted((out / f"logs-{seed}").rglob("*.log"))]
    jsonl, html = chaos_timeline.pages(logs, markers, f"meshvpn chaos, seed {seed}", time.time())
    (out / f"timeline-{seed}.jsonl").write_text(jsonl)
    (out / f"timeline-{seed}.html").write_text(html)
    report.update({"checks_by_invariant": {name: checker.checks.get(name, 0) for name in INVARIANTS},
                   "smallest_margins": {name: round(value, 3) for name, value in checker.margins.items()},
                   "violations": [violation.to_json() for violation in checker.violations],
                   "replay": f"make chaos SEED={seed} DURATION={duration:g} NODES={count}"})
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def drive(chaos: Chaos, checker: Checker, faults: list[Fault], meddling: Meddling, duration: float,
          log) -> tuple[float, dict[Fault, tuple[float, float]]]:
    """Apply and heal the faults on time, meddle, observe and judge every second, for `duration`
    seconds; the wall time it started, and each fault's wall times of apply and heal."""
    due = sorted([(fault.t, 1, n) for n, fault in enumerate(faults)] +
                 [(fault.until, 0, n) for n, fault in enumerate(faults) if fault.hold > 0])
    times: dict[Fault, tuple[float, float]] = {}
    started, wall = time.monotonic(), time.time()
    while (t := time.monotonic() - started) < duration:
        while due and due[0][0] <= t:
            _, order, number = due.pop(0)
            fault = faults[number]
            (chaos.apply if order else chaos.heal)(fault)
            now = time.time()
            times[fault] = (now, now) if order else (times[fault][0], now)
            log(f"chaos: {t:6.1f} s {'apply' if order else 'heal '} {fault.kind} {fault.target}")
        while meddling and meddling[0][0] <= t:
            meddling.pop(0)[1](chaos)
        for violation in checker.observe(chaos.observe(t)):
            log(f"chaos: {violation.t:6.1f} s VIOLATION {violation.invariant}: expected {violation.expected}; "
                f"seen {violation.seen}")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - t)))
    return wall, times


def clean(logs: list[Path], wall: float, faults: list[Fault], threshold: float, checker: Checker) -> list[Violation]:
    """An error-level line or a traceback in any log, outside every fault (and a threshold after it)."""
    found = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if not ERROR_LINE.search(line):
                continue
            checker.checks["clean"] += 1
            t = _line_time(line, wall)
            if t is not None and any(fault.t <= t <= fault.until + threshold for fault in faults):
                continue
            found.append(Violation("clean", t if t is not None else -1.0, f"no error in {path.name}", line[:300]))
    checker.checks["clean"] += len(logs)
    return found


def bounded(before: dict[str, dict], after: dict[str, dict], duration: float, checker: Checker) -> list[Violation]:
    """A process that ran the whole run grew past its bound (GROWTH: a factor of its start and a slack)."""
    found = []
    for what, start in before.items():
        end = after.get(what)
        if end is None or end["pid"] != start["pid"]:
            continue  # restarted by a fault: not the same process
        for measure, (factor, slack) in GROWTH.items():
            checker.checks["bounded"] += 1
            limit = start[measure] * factor + slack
            checker.margins["bounded"] = min(checker.margins.get("bounded", limit), limit - end[measure])
            if end[measure] > limit:
                found.append(Violation("bounded", duration, f"{what}: {measure} at most {limit:.0f}",
                                       f"{start[measure]} -> {end[measure]}"))
    return found


def keep_logs(folder: Path, into: Path) -> None:
    """Copy the run's logs out of its temporary folder (an earlier run's with the same seed replaced)."""
    shutil.rmtree(into, ignore_errors=True)
    for path in folder.rglob("*.log"):
        target = into / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def _line_time(line: str, wall: float) -> float | None:
    """A JSON log line's time, in seconds from the start of the run."""
    try:
        return datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp() - wall
    except (ValueError, KeyError, TypeError):
        return None
