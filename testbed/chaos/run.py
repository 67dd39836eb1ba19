"""The chaos soak on the namespace lab: a mesh of agents on wireguard-go and one control plane
(SQLite), or two sharing a PostgreSQL server of their own (`ha`); the schedule's faults applied
and healed on time, the mesh observed from outside every second and each snapshot judged
(testbed.chaos.invariants), then the logs and the processes' growth. Owns the faults' effects on
the lab (processes killed and started, a nftables table of its own in each host's namespace,
PostgreSQL stopped and started) and the report; decides nothing (schedule) and judges nothing
(invariants), beyond the two whole-run checks that read logs and processes (clean, bounded).
"""
from __future__ import annotations

import contextlib
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
from pathlib import Path

import httpx

from demo.timeline import parse_ts
from testbed import lab as labs
from testbed.chaos import timeline as chaos_timeline
from testbed.chaos.invariants import INVARIANTS, Checker, HostView, Member, Snapshot, Violation
from testbed.chaos.schedule import Fault, kinds_for, schedule
from testbed.control_process import ControlProcess
from testbed.meshlab import MESHAGENT, Node, all_ping, converged, on_lab, wait_for
from testbed.nft import chaos_ruleset
from testbed.pg import Server, find_bin, fresh_database

# The kinds this runner applies on the namespace lab (the schedule knows more).
APPLIED = ("agent_crash", "power_off", "pair_cut", "loss_one_way", "loss_two_way", "control_isolated",
           "leave", "join", "control_restart", "control_cut_all", "control_instance_lost", "pg_restart")
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
    def __init__(self, lab: labs.Lab, controls: list[ControlProcess], folder: Path, names: list[str], seed: int,
                 pg: Server | None = None):
        self.lab, self.controls, self.folder, self.pg = lab, controls, folder, pg
        self.rng = random.Random(seed)  # ping sampling: the same seed samples the same pairs
        self.token_file = folder / "join.token"
        self.nodes: dict[str, Node] = {}
        self.names = names
        self.host_faults: dict[str, HostFaults] = {}
        self.lives: Counter[str] = Counter()  # name -> times it left and joined again (its state dirs)
        self.cut_all: set[str] = set()  # the live faults that cut every node from the control plane
        self._log_offsets: dict[Path, int] = {}  # control logs: how far node_offline events were read

    # -- the mesh

    def build(self, timeout: float = 60) -> None:
        self.token_file.write_text(self.controls[0].join_token() + "\n")
        for name in self.names:
            self._enrol(name)
        nodes = list(self.nodes.values())
        wait_for(lambda: converged(nodes), timeout, what="the mesh to converge before the faults")
        # And every pair to have made its handshake: one initiation sent before the other end took this
        # node is dropped and retried 5 s later, which the checks must not count against the mesh.
        wait_for(lambda: all_ping(nodes), timeout, what="every pair to ping before the faults")

    def _enrol(self, name: str) -> None:
        """Start an agent on host `name` (made if new), from a fresh state directory if it left before."""
        host = next((host for host in self.lab.hosts if host.name == name), None) or self.lab.add_host(name)
        state = self.folder / (f"state-{name}" if not self.lives[name] else f"state-{name}.{self.lives[name]}")
        faults = self.host_faults.setdefault(name, HostFaults())
        faults.control_blocked |= self.cut_all  # a node joining while every node is cut is cut too
        if faults.control_blocked:
            self._apply_table(name, host)
        self.nodes[name] = Node(host, state, [control.url for control in self.controls], self.token_file).start()

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
        why = f"{fault.kind}@{fault.t}"
        (self.cut_all.discard if heal else self.cut_all.add)(why)
        for name in self.nodes:
            self._block_control(name, why, heal)

    def _block_control(self, name: str, why: str, heal: bool) -> None:
        blocked = self.host_faults[name].control_blocked
        if heal:
            blocked.discard(why)
        else:
            blocked.add(why)
        self._apply_table(name)

    def _apply_table(self, name: str, host: labs.Host | None = None) -> None:
        faults, host = self.host_faults[name], host or self.nodes[name].host
        blocked = [(self.lab.gateway, control.port) for control in self.controls] if faults.control_blocked else []
        labs.sh("ip", "netns", "exec", host.netns, "nft", "-f", "-",
                stdin=chaos_ruleset(faults.loss_in, faults.loss_out, blocked))

    def _leave(self, fault: Fault, heal: bool) -> None:
        if heal:
            self.lives[fault.target] += 1  # enrols again as a new node, from a fresh state directory
            self._enrol(fault.target)
            return
        node = self.nodes[fault.target]
        node.stop()
        with contextlib.suppress(subprocess.TimeoutExpired):  # cut from the control plane, it cannot deregister
            node.host.run(MESHAGENT, "down", "--state-dir", str(node.state_dir), "--leave", check=False, timeout=15)

    def _join(self, fault: Fault, heal: bool) -> None:
        if not heal:  # a new node joins and stays
            self._enrol(fault.target)

    def _control_restart(self, fault: Fault, heal: bool) -> None:
        for control in self.controls:  # every instance: the control plane as a whole
            _kill_or_start(control, heal)

    def _control_instance_lost(self, fault: Fault, heal: bool) -> None:
        # One instance, chosen by the fault's time (a replay loses the same one); the others serve.
        _kill_or_start(self.controls[int(fault.t * 1000) % len(self.controls)], heal)

    def _pg_restart(self, fault: Fault, heal: bool) -> None:
        assert self.pg is not None, "pg_restart needs the PostgreSQL of an ha run"
        if heal:
            self.pg.start()
        else:
            self.pg.stop()

    # -- observing

    def observe(self, t: float, wall: float) -> Snapshot:
        """The mesh now, `t` seconds into the run that started at `wall` (the epoch's seconds). The hosts
        are read before the control plane: a node back online in between must not look like a ghost
        (seen on a host, listed offline), nor a new one like a stranger (seen, not yet listed)."""
        hosts = tuple(self._view(name, node) for name, node in self.nodes.items())
        members = self.members()
        return Snapshot(t, members, hosts, self._pings(), self.offline_events(wall))

    def offline_events(self, wall: float) -> tuple[tuple[float, str], ...]:
        """The control planes' node_offline events logged since the last call: (t in the run, node id)."""
        found = []
        for control in self.controls:
            path = control.log_path
            if not path.exists():
                continue
            with path.open("rb") as log:
                log.seek(self._log_offsets.get(path, 0))
                text = log.read()
            complete = text.rfind(b"\n") + 1  # a line still being written is read next time
            self._log_offsets[path] = self._log_offsets.get(path, 0) + complete
            for line in text[:complete].decode(errors="replace").splitlines():
                if '"node_offline"' in line and (t := _line_time(line, wall)) is not None:
                    found.append((t, json.loads(line)["node"]))
        return tuple(sorted(found))

    def members(self) -> tuple[Member, ...] | None:
        """The control plane's node list, from the first instance that answers within a second (None: none did)."""
        for control in self.controls:
            try:
                answer = httpx.get(control.url + "/v1/nodes", headers=control.admin, timeout=1.0)
                answer.raise_for_status()
                break
            except httpx.HTTPError:
                continue
        else:
            return None
        return tuple(Member(n["node_id"], n["name"], n["public_key"], n["mesh_ip"], n["online"])
                     for n in answer.json()["nodes"])

    def _view(self, name: str, node: Node) -> HostView:
        return HostView(name, node.host.wg_allowed_ips(), frozenset(node.host.routes()), node.cached_revision())

    def _pings(self) -> dict[tuple[str, str], bool]:
        """A sample of ordered pairs, pinged at once (one datagram, a second's wait)."""
        known = {name: node for name, node in self.nodes.items() if (node.state_dir / "node.json").exists()}
        pairs = [(a, b) for a in known for b in known if a != b]
        sample = self.rng.sample(pairs, min(PINGS_PER_SECOND, len(pairs)))
        running = {}
        for a, b in sample:
            address = known[b].identity["mesh_ip"]
            running[(a, b)] = subprocess.Popen([*known[a].host.prefix(), "ping", "-n", "-q", "-c", "1", "-W", "1",
                                                address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {pair: proc.wait() == 0 for pair, proc in running.items()}

    def processes(self) -> dict[str, dict]:
        """Each running agent's and control plane's process group (the agent and its wireguard-go, the
        control plane's master and workers): its leader's pid, and the group's RSS and descriptors."""
        found = {f"agent:{name}": node.proc.pid for name, node in self.nodes.items()
                 if node.proc and node.proc.poll() is None}
        for number, control in enumerate(self.controls, 1):
            if control.proc and control.proc.poll() is None:
                found[f"control{number}"] = control.proc.pid
        return {what: usage for what, pid in found.items() if (usage := _usage(pid))}

    def logs(self) -> list[Path]:
        return sorted(self.folder.rglob("*.log"))


def _kill_or_start(control: ControlProcess, start: bool) -> None:
    if start:
        control.start()
    elif control.proc and control.proc.poll() is None:
        os.killpg(control.proc.pid, signal.SIGKILL)
        control.proc.wait()


def _usage(leader: int) -> dict | None:
    """RSS (kB) and open descriptors summed over the process group `leader` leads (None: gone)."""
    rss = fds = 0
    members = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != leader:
                continue
            rss += next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines()
                        if line.startswith("VmRSS:"))
            fds += len(os.listdir(entry / "fd"))
            members += 1
        except (OSError, StopIteration):
            continue
    return {"pid": leader, "rss_kb": rss, "fds": fds, "processes": members} if members else None


Meddling = list[tuple[float, Callable[["Chaos"], None]]]


def soak(seed: int, duration: float, count: int, report_path: Path, kinds: list[str] | None = None,
         threshold: float = 6.0, log=print, meddling: Meddling = (), ha: bool = False) -> dict:
    """One run: the mesh built, the schedule applied, the mesh observed and judged about every second;
    the report (also written to `report_path`, with the run's logs and its timeline beside it).
    `kinds`: the kinds drawn (None: every kind applied here; empty: none). `meddling`: what someone
    does to the lab behind the schedule's back, at its time (the tests that prove the soak can
    fail). `ha`: two control instances on PostgreSQL, and the kinds that need them."""
    names = [f"node{i}" for i in range(1, count + 1)]
    asked = list(APPLIED) if kinds is None else kinds
    chosen = kinds_for(ha=ha, only=asked)
    if kinds is not None and len(chosen) < len(asked):
        raise ValueError(f"{', '.join(sorted(set(asked) - set(chosen)))} need two control instances (CONTROLS=2)")
    unapplied = sorted(set(chosen) - set(APPLIED))
    if unapplied:
        raise ValueError(f"the namespace lab does not apply {', '.join(unapplied)} yet")
    faults = schedule(seed, duration, names, threshold, chosen)
    checker = Checker(list(faults), threshold, settle=threshold + 4)
    replay = f"make chaos SEED={seed} DURATION={duration:.10g} NODES={count} CONTROLS={2 if ha else 1}"
    report: dict = {"seed": seed, "duration": duration, "nodes": count, "controls": 2 if ha else 1,
                    "threshold": threshold, "schedule": [fault.to_json() for fault in faults],
                    "faults_by_kind": dict(Counter(fault.kind for fault in faults)),
                    "replay": replay + (f" KINDS={','.join(kinds)}" if kinds is not None else "")}
    out = report_path.parent
    out.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="meshvpn-chaos-") as temp, labs.Lab() as lab,
          control_planes(lab, Path(temp), ha, threshold) as (controls, pg)):
        folder = Path(temp)
        chaos = Chaos(lab, controls, folder, names, seed, pg)
        try:
            chaos.build()
            log(f"chaos: seed {seed}, {count} nodes converged; {len(faults)} faults over {duration:.0f} s")
            before = chaos.processes()
            wall, times = drive(chaos, checker, faults, list(meddling), duration, log)
            after = chaos.processes()
            checker.violations += clean(chaos.logs(), wall, checker)
            checker.violations += bounded(before, after, duration, checker)
        finally:
            for node in chaos.nodes.values():
                node.stop()
            keep_logs(folder, out / f"logs-{seed}")
    write_timeline(out, seed, faults, times, checker, wall)
    report.update({"checks_by_invariant": {name: checker.checks.get(name, 0) for name in INVARIANTS},
                   "smallest_margins": {name: round(value, 3) for name, value in checker.margins.items()},
                   "violations": [violation.to_json() for violation in checker.violations]})
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    return report


@contextlib.contextmanager
def control_planes(lab: labs.Lab, folder: Path, ha: bool, threshold: float):
    """One control plane on SQLite, or (`ha`) two sharing a PostgreSQL server of their own; gone at the end."""
    bindir = find_bin() if ha else None
    if ha and bindir is None:
        raise ValueError("a run with two control instances needs PostgreSQL (scripts/install-system-packages)")
    pg = Server(bindir) if bindir else None
    controls: list[ControlProcess] = []
    try:
        if pg:
            pg.start()
        db_url = fresh_database(pg.url) if pg else None
        controls += [on_lab(lab, folder / f"control{n}", db_url, heartbeat_interval=threshold / 3,
                            offline_after=threshold) for n in range(1, 3 if ha else 2)]
        for control in controls:
            control.start()
        yield controls, pg
    finally:
        for control in controls:
            control.stop()
        if pg:
            pg.remove()


def drive(chaos: Chaos, checker: Checker, faults: list[Fault], meddling: Meddling, duration: float,
          log) -> tuple[float, dict[Fault, tuple[float, float]]]:
    """Apply and heal the faults on time, meddle, observe and judge about every second, for
    `duration` seconds; the wall time it started, and each fault's wall times of apply and heal (the
    checker is told them too: a fault that takes a while to apply shifts its windows)."""
    due = sorted([(fault.t, 1, n) for n, fault in enumerate(faults)] +
                 [(fault.until, 0, n) for n, fault in enumerate(faults) if fault.hold > 0])
    times: dict[Fault, tuple[float, float]] = {}
    started, wall = time.monotonic(), time.time()
    while (t := time.monotonic() - started) < duration:
        while due and due[0][0] <= t:
            _, order, number = due.pop(0)
            fault = faults[number]
            (chaos.apply if order else chaos.heal)(fault)
            now = time.time()  # after the fault took effect: stopping or starting a process takes a while
            times[fault] = (now, now) if order else (times[fault][0], now)
            checker.record(number, times[fault][0] - wall, None if order else now - wall)
            log(f"chaos: {now - wall:6.1f} s {'apply' if order else 'heal '} {fault.kind} {fault.target}")
        while meddling and meddling[0][0] <= t:
            meddling.pop(0)[1](chaos)
        for violation in checker.observe(chaos.observe(time.monotonic() - started, wall)):
            log(f"chaos: {violation.t:6.1f} s VIOLATION {violation.invariant}: expected {violation.expected}; "
                f"seen {violation.seen}")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - t)))
    return wall, times


def write_timeline(out: Path, seed: int, faults: list[Fault], times: dict[Fault, tuple[float, float]],
                   checker: Checker, wall: float) -> None:
    markers = [marker for number, fault in enumerate(faults, 1) if fault in times
               for marker in chaos_timeline.fault_markers(number, fault, *times[fault], checker.violations, wall,
                                                          checker.threshold)]
    markers += chaos_timeline.violation_events(checker.violations, wall)
    kept = out / f"logs-{seed}"
    logs = [chaos_timeline.log_of(path.relative_to(kept), path.read_text(errors="replace"))
            for path in sorted(kept.rglob("*.log"))]
    jsonl, html = chaos_timeline.pages(logs, markers, f"meshvpn chaos, seed {seed}", time.time())
    (out / f"timeline-{seed}.jsonl").write_text(jsonl)
    (out / f"timeline-{seed}.html").write_text(html)


def clean(logs: list[Path], wall: float, checker: Checker) -> list[Violation]:
    """An error-level line or a traceback in a log, unless a fault touched the log's host (or the
    control plane) within a threshold before it. A line without a time of its own (a traceback's)
    takes the time of the JSON line before it."""
    found = []
    for path in logs:
        host = _host_of(path)
        t = None
        for line in path.read_text(errors="replace").splitlines():
            t = _line_time(line, wall) if line.startswith("{") else t
            if not ERROR_LINE.search(line):
                continue
            checker.checks["clean"] += 1
            if t is not None and checker.touched(host, t - checker.threshold, t):
                continue
            found.append(Violation("clean", t if t is not None else -1.0, f"no error in {path.name} ({host})",
                                   line[:300]))
    checker.checks["clean"] += len(logs)
    return found


def bounded(before: dict[str, dict], after: dict[str, dict], duration: float, checker: Checker) -> list[Violation]:
    """A process group that ran the whole run grew past its bound (GROWTH: a factor of its start and a slack)."""
    found = []
    for what, start in before.items():
        end = after.get(what)
        if end is None or end["pid"] != start["pid"]:
            continue  # restarted by a fault: not the same processes
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


def _host_of(path: Path) -> str:
    """The lab host whose log this is: node1.log, state-node1.2/wireguard-go.log, control1/control-P.log."""
    for part in (path.parent.name, path.stem):
        if part.startswith("state-"):
            return part.removeprefix("state-").split(".")[0]
        if part.startswith("control"):
            return "control"
    return path.stem


def _line_time(line: str, wall: float) -> float | None:
    """A JSON log line's time, in seconds from the start of the run (None: no JSON line with a time)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    moment = parse_ts(record.get("ts")) if isinstance(record, dict) else None
    return moment.timestamp() - wall if moment else None
