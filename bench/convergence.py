"""Convergence of a mesh of real agents on --nodes lab hosts, against the same join done the Ansible way.

One lab (`testbed/lab.py`: network namespaces, real wireguard-go; it lifts the kernel's neighbour
table for that many hosts itself) and one real control plane (`testbed.meshlab.on_lab`, heartbeat
every --heartbeat-interval s, a node offline after --offline-after s). In one run:

- `join`: all but --joins nodes start and converge; then the others join one at a time. A join's
  latency is from the control plane's `node_registered` to the last `peer_added` of the joiner on
  every other node (the agents' own event lines: one clock, microseconds); also from the start of
  the joiner's agent process.
- `crash`: --crashes times, a node's agent and wireguard-go are SIGKILLed (`Host.crash`): from
  the kill to its last `peer_removed` on every other node; then it restarts (same identity) and
  the time until every other node has it again is taken too.
- `churn`: while two other nodes ping each other at 10/s (both ways), --churn rounds of: one node
  crashes, another leaves (`meshagent down --leave`) and joins again as a new node, the crashed
  one restarts. Pings lost are counted; so are peers removed as offline that were never crashed.
- `control_down`: the control plane stops for --control-down s (default 300) while two nodes
  ping each other at 10/s: pings lost; then it starts again and the mesh must be whole.
- `static`: the same join done as with a static Ansible role (githubixx/ansible-role-wireguard:
  every host's config templated with a [Peer] for every other host, `wg syncconf` when it
  changed). Every lab host also has a second interface, `wgs` (its own wireguard-go), configured
  that way with all nodes but one; then the last node joins: (a) a sequential loop, per node
  "connect (nsenter) + template + `wg syncconf`", timed; (b) when sshd and ansible are here, the
  real thing: `ansible-playbook` over SSH to an sshd in every lab host (forks as ansible.cfg),
  a template task and a `wg syncconf` handler, timed --ansible-joins times (heavy: 20 forks on
  this machine); and `ansible -m ping` to one host.

The machine is shared: the load average is recorded after each phase. Root only.

    python bench/convergence.py [--nodes 50] [--joins 8] [--crashes 3] [--churn 4] [--control-down 300]
                                [--ansible-joins 1] [--json]

Results: bench/results/convergence-<run id>.json, written after each phase (`complete` false until
the run ends, so a run cut short keeps what it measured); --json prints the same object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.dataplane import stop_all
from testbed import lab as labs
from testbed.meshlab import MESHAGENT, Node, converged, on_lab, wait_for

ANSIBLE = Path(sys.executable).with_name("ansible")
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
RESULTS = Path(__file__).with_name("results")
STATIC_PORT = 51830
STATIC_IFACE = "wgs"
PING_SENT = re.compile(r"(\d+) packets transmitted, (\d+) received")
REPLY_SEQ = re.compile(r"bytes from .*icmp_seq=(\d+)")
# The static role's template (as githubixx/ansible-role-wireguard's wg.conf.j2: every other host of
# the group is a [Peer]); the same text for the sequential loop and for the real ansible-playbook.
STATIC_TEMPLATE = """\
[Interface]
PrivateKey = {{ static_private_key }}
ListenPort = {{ static_port }}
{% for other in groups['mesh'] if other != inventory_hostname %}

# {{ other }}
[Peer]
PublicKey = {{ hostvars[other]['static_public_key'] }}
AllowedIPs = {{ hostvars[other]['static_address'] }}/32
Endpoint = {{ hostvars[other]['ansible_host'] }}:{{ static_port }}
PersistentKeepalive = 25
{% endfor %}
"""
PLAYBOOK = """\
- name: Configure the static WireGuard mesh
  hosts: mesh
  gather_facts: false
  tasks:
    - name: Template the WireGuard configuration with every peer
      ansible.builtin.template:
        src: static.conf.j2
        dest: "{{ static_dir }}/{{ inventory_hostname }}.conf"
        mode: "0600"
      notify: sync wireguard
  handlers:
    - name: Sync WireGuard
      ansible.builtin.command: wg syncconf wgs {{ static_dir }}/{{ inventory_hostname }}.conf
      listen: sync wireguard
"""


def stamp(ts: str) -> float:
    """An event line's `ts` (ISO-8601 UTC) as a Unix time."""
    return datetime.fromisoformat(ts).timestamp()


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


def spread(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 0.5), "p99": pct(values, 0.99),
            "max": round(max(values), 3) if values else None}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Mesh:
    """The lab's agents, the control plane, and the event lines they write."""

    def __init__(self, lab: labs.Lab, tmp: Path, control, nodes: list[Node]):
        self.lab, self.tmp, self.control, self.nodes = lab, tmp, control, nodes

    def last_event(self, node: Node, event: str, peer: str, since: float) -> float | None:
        """When `node` last logged `event` for `peer` at or after `since` (Unix time), if it did."""
        found = [stamp(e["ts"]) for e in node.events(event) if e.get("peer") == peer and stamp(e["ts"]) >= since]
        return max(found) if found else None

    def everywhere(self, event: str, name: str, since: float, timeout: float,
                   exclude: frozenset = frozenset()) -> float:
        """Unix time at which the last other running node (but `exclude`) logged `event` for `name` (after `since`)."""
        others = [n for n in self.running() if n.host.name != name and n.host.name not in exclude]

        def done():
            times = [self.last_event(n, event, name, since) for n in others]
            found = [t for t in times if t is not None]
            return max(found) if len(found) == len(times) else None
        return wait_for(done, timeout, step=0.25, what=f"{event} of {name} on every peer")

    def first(self, event: str, name: str, since: float) -> float:
        """Unix time at which the first other running node logged `event` for `name` (after `since`)."""
        times = [self.last_event(n, event, name, since) for n in self.running() if n.host.name != name]
        return min(t for t in times if t is not None)

    def registered(self, name: str, since: float) -> float:
        def found():
            times = [stamp(e["ts"]) for e in self.control.events("node_registered")
                     if e["node_name"] == name and stamp(e["ts"]) >= since]
            return max(times) if times else None
        return wait_for(found, 60, step=0.2, what=f"{name} registered")

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def false_offline(self, since: float, crashed: set[str]) -> int:
        """Peers removed as offline after `since` that were not crashed (a node wrongly declared offline)."""
        return sum(1 for n in self.running() for e in n.events("peer_removed")
                   if e.get("reason") == "offline" and e.get("peer") not in crashed and stamp(e["ts"]) >= since)


def pinger(a: Node, b: Node) -> subprocess.Popen:
    """ping from a to b's mesh IP every 100 ms until interrupted (every reply printed)."""
    return subprocess.Popen([*a.host.prefix(), "ping", "-n", "-i", "0.1", "-W", "1", b.identity["mesh_ip"]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_pinger(proc: subprocess.Popen) -> dict:
    proc.send_signal(signal.SIGINT)  # nsenter exec'd ping: it prints its summary
    out, _ = proc.communicate(timeout=30)
    found = PING_SENT.search(out)
    if not found:
        raise RuntimeError(f"ping printed no summary: {out[-500:]}")
    sent, received = int(found.group(1)), int(found.group(2))
    # The last request may still have been on its way when ping was interrupted: not a loss.
    answered = {int(seq) for seq in REPLY_SEQ.findall(out)}
    lost = sorted(set(range(1, sent)) - answered)
    return {"sent": sent, "received": received, "lost": len(lost), "lost_seqs": lost[:50]}


def phase_join(mesh: Mesh, joiners: list[Node]) -> dict:
    registered_to_all, started_to_all, registered_to_first = [], [], []
    for node in joiners:
        started = time.time()
        node.start()
        mesh.nodes.append(node)
        registered = mesh.registered(node.host.name, started)
        everywhere = mesh.everywhere("peer_added", node.host.name, registered, 60)
        registered_to_all.append(everywhere - registered)
        registered_to_first.append(mesh.first("peer_added", node.host.name, registered) - registered)
        started_to_all.append(everywhere - started)
        time.sleep(1)
    return {"registered_to_every_peer_s": spread(registered_to_all),
            "agent_start_to_every_peer_s": spread(started_to_all),
            "registered_to_first_peer_s": spread(registered_to_first),
            "samples": [{"registered_to_every_peer_s": round(r, 3), "agent_start_to_every_peer_s": round(s, 3),
                         "registered_to_first_peer_s": round(f, 3)}
                        for r, s, f in zip(registered_to_all, started_to_all, registered_to_first, strict=True)],
            "loadavg": load()}


def phase_crash(mesh: Mesh, victims: list[Node]) -> dict:
    removed, back = [], []
    for node in victims:
        killed = time.time()
        node.host.crash()
        assert node.proc is not None
        node.proc.wait()
        removed.append(mesh.everywhere("peer_removed", node.host.name, killed, 120) - killed)
        restarted = time.time()
        node.start()
        back.append(mesh.everywhere("peer_added", node.host.name, restarted, 120) - restarted)
    return {"kill_to_removed_everywhere_s": spread(removed), "restart_to_every_peer_s": spread(back),
            "samples_removed_s": [round(x, 3) for x in removed], "samples_back_s": [round(x, 3) for x in back],
            "loadavg": load()}


def leave(node: Node) -> None:
    node.stop()
    done = node.host.run(MESHAGENT, "down", "--state-dir", str(node.state_dir), "--leave", check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{node.host.name}: meshagent down --leave: {done.stdout}{done.stderr}")


def phase_churn(mesh: Mesh, pair: tuple[Node, Node], others: list[Node], rounds: int) -> dict:
    began = time.time()
    probes = [pinger(pair[0], pair[1]), pinger(pair[1], pair[0])]
    crashed: set[str] = set()
    try:
        for index in range(rounds):
            victim, leaver = others[2 * index % len(others)], others[(2 * index + 1) % len(others)]
            crashed.add(victim.host.name)
            killed = time.time()
            victim.host.crash()
            assert victim.proc is not None
            victim.proc.wait()
            leave(leaver)
            rejoined = time.time()
            leaver.start()
            mesh.everywhere("peer_added", leaver.host.name, rejoined, 120)
            # The rejoined node may have come after the victim was gone: it never had it to remove.
            mesh.everywhere("peer_removed", victim.host.name, killed, 120, exclude=frozenset({leaver.host.name}))
            restarted = time.time()
            victim.start()
            mesh.everywhere("peer_added", victim.host.name, restarted, 120)
    finally:
        pings = [stop_pinger(probe) for probe in probes]
    return {"rounds": rounds, "seconds": round(time.time() - began, 1), "pings": pings,
            "lost": sum(p["lost"] for p in pings), "false_offline": mesh.false_offline(began, crashed),
            "loadavg": load()}


def phase_control_down(mesh: Mesh, pair: tuple[Node, Node], seconds: float) -> dict:
    began = time.time()
    mesh.control.stop()
    probes = [pinger(pair[0], pair[1]), pinger(pair[1], pair[0])]
    try:
        time.sleep(seconds)
    finally:
        pings = [stop_pinger(probe) for probe in probes]
        mesh.control.start()
    wait_for(lambda: converged(mesh.nodes), 180, step=2, what="the mesh whole after the control plane's return")
    return {"seconds": seconds, "pings": pings, "lost": sum(p["lost"] for p in pings),
            "false_offline": mesh.false_offline(began, set()), "loadavg": load()}


class Static:
    """The static (Ansible-style) mesh on `wgs`: each host's key and address, and the two ways to join."""

    def __init__(self, hosts: list[labs.Host], tmp: Path):
        self.hosts, self.dir = hosts, tmp / "static"
        self.dir.mkdir()
        self.vars = {}
        for index, host in enumerate(hosts):
            private = labs.sh("wg", "genkey").stdout.strip()
            self.vars[host.name] = {"ansible_host": host.address, "static_private_key": private,
                                    "static_public_key": labs.sh("wg", "pubkey", stdin=private + "\n").stdout.strip(),
                                    "static_address": f"172.30.{index // 250}.{index % 250 + 1}"}
        self.template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(STATIC_TEMPLATE)

    def boot(self) -> None:
        """wireguard-go for `wgs` on every host, its address, up (no peers yet)."""
        for host in self.hosts:
            with open(self.dir / f"wireguard-go-{host.name}.log", "ab") as log:
                subprocess.run([*host.prefix(), "wireguard-go", STATIC_IFACE], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, start_new_session=True, check=True, timeout=30)
            host.run("ip", "addr", "add", f"{self.vars[host.name]['static_address']}/16", "dev", STATIC_IFACE)
            host.run("ip", "link", "set", STATIC_IFACE, "up")

    def render(self, host: labs.Host, members: list[labs.Host]) -> str:
        return self.template.render(groups={"mesh": [m.name for m in members]}, inventory_hostname=host.name,
                                    hostvars=self.vars, static_port=STATIC_PORT, **self.vars[host.name])

    def loop(self, members: list[labs.Host]) -> float:
        """Per member in turn: template its config, and `wg syncconf` it there. Seconds taken."""
        started = time.monotonic()
        for host in members:
            path = self.dir / f"{host.name}.conf"
            path.write_text(self.render(host, members))
            path.chmod(0o600)
            host.run("wg", "syncconf", STATIC_IFACE, str(path))
        return time.monotonic() - started

    def peers(self, host: labs.Host) -> int:
        return len(host.run("wg", "show", STATIC_IFACE, "peers").stdout.split())

    def whole(self, members: list[labs.Host]) -> bool:
        return all(self.peers(h) == len(members) - 1 for h in members)


class Ansible:
    """sshd in every lab host, an inventory of them and the static role's playbook."""

    def __init__(self, static: Static, tmp: Path):
        self.static, self.dir = static, tmp / "ansible"
        self.dir.mkdir()
        for key in ("host", "client"):
            labs.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key))
        shutil.copy(self.dir / "client.pub", self.dir / "authorized_keys")
        (self.dir / "static.conf.j2").write_text(STATIC_TEMPLATE)
        (self.dir / "playbook.yml").write_text(PLAYBOOK)
        ssh_args = f"-o UserKnownHostsFile=/dev/null -o ControlPath={self.dir}/cp-%C"
        (self.dir / "ansible.cfg").write_text(
            "[defaults]\nhost_key_checking = False\ninterpreter_python = /usr/bin/python3\nforks = 20\n"
            f"[ssh_connection]\npipelining = True\nssh_args = -C -o ControlMaster=auto -o ControlPersist=60s "
            f"{ssh_args}\n")
        self.env = {**os.environ, "ANSIBLE_CONFIG": str(self.dir / "ansible.cfg")}

    def boot(self) -> None:
        for host in self.static.hosts:
            config = self.dir / f"sshd-{host.name}"
            config.write_text(f"ListenAddress {host.address}\nHostKey {self.dir}/host\nPidFile {config}.pid\n"
                              f"AuthorizedKeysFile {self.dir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                              "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                              "StrictModes no\n")
            host.run("/usr/sbin/sshd", "-f", str(config))

    def inventory(self, members: list[labs.Host]) -> Path:
        path = self.dir / f"inventory-{len(members)}.json"
        path.write_text(json.dumps({"mesh": {"hosts": {h.name: {
            **self.static.vars[h.name], "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.dir / "client"),
            "static_port": STATIC_PORT, "static_dir": str(self.static.dir)} for h in members}}}))
        return path

    def ping(self, host: labs.Host) -> float:
        started = time.monotonic()
        inventory = self.inventory(self.static.hosts)
        subprocess.run([str(ANSIBLE), host.name, "-i", str(inventory), "-m", "ansible.builtin.ping"], env=self.env,
                       check=True, capture_output=True, timeout=120)
        return time.monotonic() - started

    def playbook(self, members: list[labs.Host]) -> float:
        started = time.monotonic()
        inventory = self.inventory(members)
        done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(self.dir / "playbook.yml")],
                              env=self.env, capture_output=True, text=True, timeout=900, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return time.monotonic() - started


def phase_static(hosts: list[labs.Host], tmp: Path, ansible_joins: int) -> dict:
    static = Static(hosts, tmp)
    static.boot()
    before = hosts[:-1]  # the last host is the joiner
    static.loop(before)
    assert static.whole(before), "the static mesh without the joiner is not whole"
    loops = []
    for _ in range(3):
        loops.append(static.loop(hosts))
        assert static.whole(hosts), "the static join did not reach every node"
        static.loop(before)  # back to the mesh without the joiner, untimed
    found: dict = {"sequential_loop_s": spread(loops), "samples_loop_s": [round(x, 3) for x in loops],
                   "per_node_loop_ms": round(statistics.median(loops) / len(hosts) * 1000, 1)}
    if ansible_joins:
        ansible = Ansible(static, tmp)
        ansible.boot()
        found["ansible_ping_s"] = [round(ansible.ping(hosts[0]), 3) for _ in range(3)]
        plays = []
        for _ in range(ansible_joins):
            # The mesh without the joiner is what the loop left: the join changes every host's file,
            # so every host gets the template written and the handler run.
            plays.append(ansible.playbook(hosts))
            assert static.whole(hosts), "the ansible join did not reach every node"
            static.loop(before)
        found["ansible_playbook_join_s"] = [round(x, 3) for x in plays]
    found["loadavg"] = load()
    return found


def run(args, save) -> dict:
    """The phases in turn; `save(result)` after each, so a run cut short keeps what it measured."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="convergence-") as tmp, labs.Lab() as lab:
        tmp_path = Path(tmp)
        control = on_lab(lab, tmp_path / "control")
        for flag, value in (("--heartbeat-interval", args.heartbeat_interval), ("--offline-after", args.offline_after)):
            control.args[control.args.index(flag) + 1] = str(value)
        control.start()
        token_file = tmp_path / "join.token"
        token_file.write_text(control.join_token() + "\n")
        all_nodes = [Node(lab.add_host(f"n{i}"), tmp_path / f"state-n{i}", [control.url], token_file)
                     for i in range(args.nodes)]
        first, joiners = all_nodes[:-args.joins], all_nodes[-args.joins:]
        mesh = Mesh(lab, tmp_path, control, list(first))
        result: dict = {"loadavg_start": load()}
        try:
            began = time.monotonic()
            for node in first:
                node.start()
            wait_for(lambda: converged(mesh.nodes), 600, step=2, what="the first nodes' mesh")
            result["initial"] = {"nodes": len(first), "start_to_converged_s": round(time.monotonic() - began, 1),
                                 "loadavg": load()}
            result["join"] = phase_join(mesh, joiners)
            save(result)
            wait_for(lambda: converged(mesh.nodes), 120, step=2, what="the mesh of every node")
            pair, rest = (all_nodes[0], all_nodes[1]), all_nodes[2:]
            result["crash"] = phase_crash(mesh, random.sample(rest, args.crashes))
            save(result)
            result["churn"] = phase_churn(mesh, pair, random.sample(rest, max(2, 2 * args.churn)), args.churn)
            save(result)
            wait_for(lambda: converged(mesh.nodes), 120, step=2, what="the mesh after churn")
            result["control_down"] = phase_control_down(mesh, pair, args.control_down)
            save(result)
            with_ansible = ANSIBLE_PLAYBOOK.exists() and Path("/usr/sbin/sshd").exists()
            result["static"] = phase_static([n.host for n in all_nodes], tmp_path,
                                            args.ansible_joins if with_ansible else 0)
        finally:
            stop_all(all_nodes, control)
    join_p99 = result["join"]["registered_to_every_peer_s"]["p99"]
    static_loop = result["static"]["sequential_loop_s"]["p50"]
    ansible_join = result["static"].get("ansible_playbook_join_s")
    result["summary"] = {
        "join_p50_s": result["join"]["registered_to_every_peer_s"]["p50"], "join_p99_s": join_p99,
        "crash_removed_p99_s": result["crash"]["kill_to_removed_everywhere_s"]["p99"],
        "churn_pings_lost": result["churn"]["lost"], "control_down_pings_lost": result["control_down"]["lost"],
        "static_loop_join_s": static_loop,
        "static_loop_vs_agent_join_p99": round(static_loop / join_p99, 1) if join_p99 else None,
        "ansible_join_s": min(ansible_join) if ansible_join else None,
        "ansible_vs_agent_join_p99": round(min(ansible_join) / join_p99, 1) if ansible_join and join_p99 else None}
    return {"bench": "convergence", "nodes": args.nodes, "heartbeat_interval": args.heartbeat_interval,
            "offline_after": args.offline_after, "cpu_count": os.cpu_count(),
            "seconds": round(time.time() - started, 1), **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--joins", type=int, default=8, help="nodes that join one at a time, after the others")
    parser.add_argument("--crashes", type=int, default=3)
    parser.add_argument("--churn", type=int, default=4, help="rounds of crash + leave/join + restart")
    parser.add_argument("--control-down", type=float, default=300.0, help="seconds the control plane is down")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--offline-after", type=float, default=3.0)
    parser.add_argument("--ansible-joins", type=int, default=1,
                        help="times the join is done by ansible-playbook over SSH (0: not at all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = labs.can_run()
    if reason:
        raise SystemExit(f"convergence: {reason}")
    if not 1 <= args.joins < args.nodes - 4:
        raise SystemExit("convergence: --joins must leave at least 4 nodes that start first")
    run_id = time.strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"convergence-{run_id}.json"

    def save(found: dict, complete: bool = False) -> None:
        path.write_text(json.dumps({"run_id": run_id, "complete": complete, **found}, indent=2) + "\n")
    result = {"run_id": run_id, "complete": True, **run(args, save)}
    save(result, complete=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
