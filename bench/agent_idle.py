"""Idle cost of the agent: RSS and CPU of real agents on lab hosts while nothing changes.

A lab (`testbed/lab.py`: network namespaces, real wireguard-go) with --nodes agents and a real
control plane (heartbeat every 2 s, offline after 6 s, `testbed.meshlab.on_lab`). Once every agent
has converged and every pair pings, the agents are left alone for --settle s, then each agent
process is sampled with psutil every second for --seconds s:

- CPU: its own user + system time over the window, as a percentage of one core; the CPU of the
  children it waited for (`wg show` and the like) is reported apart;
- memory: RSS at every sample (max and last), and USS/PSS at the end (memory it alone holds);
- writes: the agent's own count of WireGuard and netlink writes over the window, from its status
  (`writes`), where the agent reports it.

The machine is shared: CPU figures are noisy, so compare the agents of one run with each other.
`--compare REV` does that for two versions: --nodes more agents, in the same mesh and the same
window, run the agent of git revision REV (its `agent/` and `meshcommon/`, taken with
`git archive`, imported ahead of the work tree's); the summary has each group and their ratio.
Root only (namespaces).

    python bench/agent_idle.py [--nodes 3] [--seconds 60] [--settle 15] [--label L] [--compare HEAD] [--json]

Results: bench/results/agent_idle-<run id>.json; --json prints the same object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import record
from testbed import lab as labs
from testbed.meshlab import Node, all_ping, converged, on_lab, wait_for
from testbed.revisions import export

MB = 1024 * 1024
# `meshagent` from another copy of the source: the work tree's editable install would win over
# PYTHONPATH, so its finder is dropped first.
RUN_FROM = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if not getattr(f, '__module__', '').startswith('__editable__')]; sys.path.insert(0, {source!r}); "
            "from agent.cli import main; sys.exit(main())")


class OtherSourceNode(Node):
    """An agent run from `source` (a revision's `agent/` and `meshcommon/`)."""

    def __init__(self, *args, source: Path):
        super().__init__(*args)
        self.source = source

    def start(self) -> Node:
        args = [sys.executable, "-c", RUN_FROM.format(source=str(self.source)), "up", "--name", self.host.name,
                "--state-dir", str(self.state_dir), "--join-token-file", str(self.token_file), "--listen-port",
                "51820"]
        for url in self.controls:
            args += ["--control", url]
        self.proc = self.host.popen(args, self.log)
        return self


def writes(node: Node) -> dict | None:
    return node.status().get("writes")


def sample(procs: dict[str, psutil.Process], seconds: float) -> dict[str, dict]:
    """Every agent's CPU over `seconds` (its own, and its children's), its RSS each second."""
    start = {name: proc.cpu_times() for name, proc in procs.items()}
    rss: dict[str, list[int]] = {name: [] for name in procs}
    began = time.monotonic()
    while (left := began + seconds - time.monotonic()) > 0:
        for name, proc in procs.items():
            rss[name].append(proc.memory_info().rss)
        time.sleep(min(1.0, left))
    window = time.monotonic() - began
    found = {}
    for name, proc in procs.items():
        end, full = proc.cpu_times(), proc.memory_full_info()
        own = (end.user - start[name].user) + (end.system - start[name].system)
        waited = (end.children_user - start[name].children_user) + (end.children_system - start[name].children_system)
        found[name] = {"pid": proc.pid, "cpu_percent": round(100 * own / window, 3),
                       "children_cpu_percent": round(100 * waited / window, 3),
                       "threads": proc.num_threads(),
                       "rss_mb_max": round(max(rss[name]) / MB, 1), "rss_mb_last": round(rss[name][-1] / MB, 1),
                       "uss_mb": round(full.uss / MB, 1), "pss_mb": round(full.pss / MB, 1)}
    return found


def group_summary(agents: list[dict]) -> dict:
    return {
        "cpu_percent_mean": round(statistics.mean(a["cpu_percent"] for a in agents), 3),
        "cpu_percent_max": max(a["cpu_percent"] for a in agents),
        "children_cpu_percent_mean": round(statistics.mean(a["children_cpu_percent"] for a in agents), 3),
        "rss_mb_max": max(a["rss_mb_max"] for a in agents),
        "rss_mb_mean": round(statistics.mean(a["rss_mb_last"] for a in agents), 1),
        "uss_mb_mean": round(statistics.mean(a["uss_mb"] for a in agents), 1),
    }


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="agent-idle-") as tmp, labs.Lab() as lab:
        tmp_path = Path(tmp)
        control = on_lab(lab, tmp_path / "control").start()
        token_file = tmp_path / "join.token"
        token_file.write_text(control.join_token() + "\n")
        nodes = [Node(lab.add_host(f"n{i}"), tmp_path / f"state-n{i}", [control.url], token_file).start()
                 for i in range(args.nodes)]
        if args.compare:
            source = export(args.compare, tmp_path / "source", "agent", "meshcommon")
            nodes += [OtherSourceNode(lab.add_host(f"o{i}"), tmp_path / f"state-o{i}", [control.url], token_file,
                                      source=source).start() for i in range(args.nodes)]
        try:
            wait_for(lambda: converged(nodes), 60, what="mesh convergence")
            wait_for(lambda: all_ping(nodes), 30, what="pings over the mesh")
            time.sleep(args.settle)
            procs = {node.host.name: psutil.Process(node.proc.pid) for node in nodes}
            for name, proc in procs.items():
                assert "meshagent" in " ".join(proc.cmdline()) or "agent.cli" in " ".join(proc.cmdline()), name
            before = {node.host.name: writes(node) for node in nodes}
            load = os.getloadavg()
            agents = sample(procs, args.seconds)
            for node in nodes:
                after = writes(node)
                first = before[node.host.name]
                agents[node.host.name]["writes"] = None if after is None or first is None else {
                    kind: after[kind] - first[kind] for kind in after}
            assert converged(nodes), "the mesh changed during the window"
        finally:
            for node in nodes:
                node.stop()
            control.stop()
    result = {"bench": "agent_idle", "label": args.label, "nodes": args.nodes, "seconds": args.seconds,
              "settle": args.settle, "heartbeat_interval": 2.0, "loadavg_before": [round(x, 2) for x in load],
              "cpu_count": os.cpu_count(), "agents": agents,
              "summary": group_summary([a for name, a in agents.items() if name.startswith("n")])}
    if args.compare:
        other = group_summary([a for name, a in agents.items() if name.startswith("o")])
        result["compare"] = {"revision": args.compare, "peers_per_agent": 2 * args.nodes - 1, "summary": other,
                             "ratio_work_tree_to_revision": {
                                 key: round(result["summary"][key] / other[key], 2) if other[key] else None
                                 for key in ("cpu_percent_mean", "rss_mb_mean", "uss_mb_mean")}}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--compare", metavar="REV", help="as many more agents, running git revision REV's agent")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = labs.can_run()
    if reason:
        raise SystemExit(f"agent_idle: {reason}")
    result = run(args)
    record.save("agent_idle", result, args.json)
    if not args.json:
        for name, agent in result["agents"].items():
            print(f"{name}: cpu {agent['cpu_percent']:.2f} % (+ children {agent['children_cpu_percent']:.2f} %), "
                  f"rss {agent['rss_mb_last']} MB (max {agent['rss_mb_max']}), uss {agent['uss_mb']} MB, "
                  f"writes {agent['writes']}")
        print(json.dumps(result["summary"]))
        if args.compare:
            print(json.dumps(result["compare"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
