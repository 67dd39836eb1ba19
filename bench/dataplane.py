"""Data plane cost: the mesh as the agent configures it against hand-configured WireGuard and the underlay.

One lab (`testbed/lab.py`: network namespaces, real wireguard-go) with two hosts, a and b, and a
real control plane (`testbed.meshlab.on_lab`). On the same pair of hosts, three paths to b:

- `mesh`: `mesh0`, made by real agents (`meshagent up`, its own wireguard-go, its own peers);
- `hand`: `wg1`, made the way an administrator does by hand: `wireguard-go wg1` started from a
  shell's environment, `wg setconf wg1 FILE`, an address in a /24, `ip link set up`: nothing else;
- `underlay`: b's address on the lab bridge (veth pairs through a bridge namespace);
- with --controls, two more hand-made pairs on the same hosts: `twin`, a second `hand` exactly
  alike (wg2): how far two identical tunnels differ in this method, the floor below which a
  mesh/hand gap is noise; and `meshlike` (wg3): by hand, but with what the agent configures beyond
  a bare tunnel (PersistentKeepalive 25, the address as a /32 and the peer as a /32 route of
  protocol 77, as agent/apply.py does): whether those settings cost anything.

For --rounds rounds, each path is measured in turn (the order rotates each round, so noise from
the shared machine hits every path alike): iperf3 TCP a -> b for --seconds s (the first second
omitted, slow start), then --pings pings every 10 ms for the round-trip time. Besides the
figures the run records what could make the two WireGuard paths differ: each wireguard-go's MTU,
offload features, GOMAXPROCS-like environment and the CPU time it used, and the machine's load.
Root only (namespaces).

    python bench/dataplane.py [--rounds 5] [--seconds 4] [--pings 50] [--agents-stopped] [--controls] [--json]

Results: bench/results/dataplane-<run id>.json; --json prints the same object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import record
from testbed import lab as labs
from testbed.meshlab import Node, all_ping, converged, on_lab, wait_for

VARIANTS = ("mesh", "hand", "underlay")
CONTROLS = ("twin", "meshlike")  # --controls: (interface, listen port, subnet) of each below
HAND_PAIRS = {"hand": ("wg1", 51821, "172.31.0"), "twin": ("wg2", 51822, "172.31.1"),
              "meshlike": ("wg3", 51823, "172.31.2")}
ROUTE_PROTO = 77  # agent/observe.py's, written here as the agent writes it (bench does not import the agent)
RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
LOSS = re.compile(r"([\d.]+)% packet loss")
# What a shell started by hand has: wireguard-go sees nothing of the bench's environment.
HAND_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
GO_ENV = re.compile(r"^(GO\w*|WG_\w*)=")


def stop_all(nodes: list[Node], control) -> None:
    """Stop every agent (SIGTERM to all first: under load one by one takes minutes), SIGKILL those
    that do not stop; then the control plane. Lab.__exit__ then removes what is left in the hosts."""
    running = [n.proc for n in nodes if n.proc is not None and n.proc.poll() is None]
    try:
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        control.stop()


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int) -> float:
    """User + system seconds of a process so far."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def wireguard_go_pid(host: labs.Host, interface: str) -> int:
    """The wireguard-go serving `interface` on `host` (its command line names the interface)."""
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if cmdline[0].endswith(b"wireguard-go") and interface.encode() in cmdline:
            return pid
    raise RuntimeError(f"no wireguard-go for {interface} on {host.name}")


def describe(host: labs.Host, interface: str, pid: int) -> dict:
    """What could make one WireGuard interface slower than another: MTU, offloads, queue, environment."""
    link = json.loads(host.run("ip", "-d", "-j", "link", "show", interface).stdout)[0]
    features = host.run("ethtool", "-k", interface, check=False).stdout
    wanted = ("tx-checksumming", "scatter-gather", "tcp-segmentation-offload", "generic-segmentation-offload",
              "generic-receive-offload", "rx-udp-gro-forwarding")
    offloads = {line.split(":")[0].strip(): line.split(":")[1].split()[0] for line in features.splitlines()
                if ":" in line and line.split(":")[0].strip() in wanted}
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return {"mtu": link.get("mtu"), "txqlen": link.get("txqlen"), "qdisc": link.get("qdisc"),
            "gso_max_size": link.get("gso_max_size"), "offloads": offloads or None,
            "go_env": sorted(e for e in environ if GO_ENV.match(e)),
            "threads": len(os.listdir(f"/proc/{pid}/task"))}


def hand_configure(a: labs.Host, b: labs.Host, tmp: Path, variant: str = "hand") -> dict[str, str]:
    """A pair of interfaces on a and b configured by hand (`HAND_PAIRS[variant]`); each host's address.
    `meshlike` adds what the agent sets beyond a bare tunnel: a keepalive, a /32 address, a /32 route."""
    interface, port, subnet = HAND_PAIRS[variant]
    mesh_like = variant == "meshlike"
    keys = {h.name: labs.sh("wg", "genkey").stdout.strip() for h in (a, b)}
    public = {name: labs.sh("wg", "pubkey", stdin=key + "\n").stdout.strip() for name, key in keys.items()}
    addresses = {a.name: f"{subnet}.1", b.name: f"{subnet}.2"}
    for me, other in ((a, b), (b, a)):
        conf = tmp / f"{interface}-{me.name}.conf"
        keepalive = "PersistentKeepalive = 25\n" if mesh_like else ""
        conf.write_text(f"[Interface]\nPrivateKey = {keys[me.name]}\nListenPort = {port}\n\n"
                        f"[Peer]\nPublicKey = {public[other.name]}\nAllowedIPs = {addresses[other.name]}/32\n"
                        f"Endpoint = {other.address}:{port}\n{keepalive}")
        with open(tmp / f"wireguard-go-{interface}-{me.name}.log", "ab") as log:
            subprocess.run([*me.prefix(), "wireguard-go", interface], stdin=subprocess.DEVNULL, stdout=log,
                           stderr=log, env=HAND_ENV, start_new_session=True, check=True, timeout=30)
        me.run("wg", "setconf", interface, str(conf))
        me.run("ip", "addr", "add", f"{addresses[me.name]}/{32 if mesh_like else 24}", "dev", interface)
        me.run("ip", "link", "set", interface, "up")
        if mesh_like:
            me.run("ip", "route", "replace", f"{addresses[other.name]}/32", "dev", interface, "proto",
                   str(ROUTE_PROTO))
    return addresses


def iperf(a: labs.Host, target: str, seconds: float) -> float:
    """TCP throughput a -> target in Gbit/s, as the receiver counted it (the first second omitted)."""
    done = a.run("iperf3", "-c", target, "-t", str(seconds), "-O", "1", "-J", timeout=seconds + 30)
    report = json.loads(done.stdout)
    return report["end"]["sum_received"]["bits_per_second"] / 1e9


def ping(a: labs.Host, target: str, count: int) -> dict:
    done = a.run("ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", "1", target, check=False,
                 timeout=count + 30)
    rtt, loss = RTT.search(done.stdout), LOSS.search(done.stdout)
    return {"rtt_avg_ms": float(rtt.group(2)) if rtt else None, "rtt_min_ms": float(rtt.group(1)) if rtt else None,
            "rtt_mdev_ms": float(rtt.group(4)) if rtt else None, "loss_percent": float(loss.group(1)) if loss else None}


def measure(lab_hosts: tuple[labs.Host, labs.Host], targets: dict[str, str], pids: dict[str, list[int]],
            variant: str, args) -> dict:
    a, _ = lab_hosts
    busy0, total0 = cpu_busy()
    wg_cpu0 = sum(process_cpu(pid) for pid in pids.get(variant, []))
    started = time.monotonic()
    gbits = iperf(a, targets[variant], args.seconds)
    took = time.monotonic() - started
    busy1, total1 = cpu_busy()
    wg_cpu = sum(process_cpu(pid) for pid in pids.get(variant, [])) - wg_cpu0
    return {"variant": variant, "gbit_s": round(gbits, 3),
            "machine_cpu_busy": round((busy1 - busy0) / (total1 - total0), 3),
            "wireguard_go_cores": round(wg_cpu / took, 3) if variant in pids else None,
            **ping(a, targets[variant], args.pings), "loadavg_1m": round(os.getloadavg()[0], 2)}


def summarize(rounds: list[dict], variants: tuple[str, ...] = VARIANTS) -> dict:
    by = {v: [r for r in rounds if r["variant"] == v] for v in variants}
    medians = {v: {"gbit_s": round(statistics.median(r["gbit_s"] for r in rs), 3),
                   "rtt_avg_ms": round(statistics.median(r["rtt_avg_ms"] for r in rs if r["rtt_avg_ms"]), 3),
                   "rtt_min_ms": round(statistics.median(r["rtt_min_ms"] for r in rs if r["rtt_min_ms"]), 3),
                   "machine_cpu_busy": round(statistics.median(r["machine_cpu_busy"] for r in rs), 3)}
               for v, rs in by.items()}
    for v in (v for v in variants if v != "underlay"):  # throughput per core of wireguard-go: its efficiency
        medians[v]["gbit_per_wireguard_go_core"] = round(statistics.median(
            r["gbit_s"] / r["wireguard_go_cores"] for r in by[v]), 3)
    # Per round: mesh over hand of the same round (the two measured within seconds of each other).
    per_round = [round(m["gbit_s"] / h["gbit_s"], 3) for m, h in zip(by["mesh"], by["hand"], strict=True)]
    controls = {}
    for v in (v for v in CONTROLS if v in by):  # each control over hand, as mesh over hand
        ratios = [round(c["gbit_s"] / h["gbit_s"], 3) for c, h in zip(by[v], by["hand"], strict=True)]
        controls[f"{v}_vs_hand_ratio"] = round(medians[v]["gbit_s"] / medians["hand"]["gbit_s"], 3)
        controls[f"{v}_vs_hand_per_round"] = ratios
        controls[f"{v}_vs_hand_per_round_median"] = round(statistics.median(ratios), 3)
    return {"medians": medians, **controls,
            "mesh_vs_hand_ratio": round(medians["mesh"]["gbit_s"] / medians["hand"]["gbit_s"], 3),
            "mesh_vs_hand_per_round": per_round,
            "mesh_vs_hand_per_round_median": round(statistics.median(per_round), 3),
            "mesh_vs_hand_efficiency_ratio": round(medians["mesh"]["gbit_per_wireguard_go_core"]
                                                   / medians["hand"]["gbit_per_wireguard_go_core"], 3),
            "hand_vs_underlay_ratio": round(medians["hand"]["gbit_s"] / medians["underlay"]["gbit_s"], 3)}


def run(args) -> dict:
    variants = VARIANTS + (CONTROLS if args.controls else ())
    with tempfile.TemporaryDirectory(prefix="dataplane-") as tmp, labs.Lab() as lab:
        tmp_path = Path(tmp)
        control = on_lab(lab, tmp_path / "control").start()
        nodes: list[Node] = []
        server = None
        try:
            token_file = tmp_path / "join.token"
            token_file.write_text(control.join_token() + "\n")
            nodes = [Node(lab.add_host(name), tmp_path / f"state-{name}", [control.url], token_file).start()
                     for name in ("a", "b")]
            wait_for(lambda: converged(nodes), 60, what="mesh convergence")
            wait_for(lambda: all_ping(nodes), 30, what="pings over the mesh")
            if args.agents_stopped:  # the data plane stays: what the agents' periodic work costs the tunnel
                for node in nodes:
                    node.stop()
                wait_for(lambda: nodes[0].host.ping(nodes[1].identity["mesh_ip"], count=1).returncode == 0, 10,
                         what="the mesh after its agents stopped")
            a, b = nodes[0].host, nodes[1].host
            targets = {"mesh": nodes[1].identity["mesh_ip"], "underlay": b.address}
            pids = {"mesh": [wireguard_go_pid(h, "mesh0") for h in (a, b)]}
            interfaces = {"mesh": {h.name: describe(h, "mesh0", pid) for h, pid in zip((a, b), pids["mesh"],
                                                                                         strict=True)}}
            for variant in ("hand", *(CONTROLS if args.controls else ())):
                interface = HAND_PAIRS[variant][0]
                addresses = hand_configure(a, b, tmp_path, variant)
                wait_for(lambda: a.ping(addresses["b"], count=1).returncode == 0, 20,  # noqa: B023 (called at once)
                         what=f"pings over {interface}")
                targets[variant] = addresses["b"]
                pids[variant] = [wireguard_go_pid(h, interface) for h in (a, b)]
                interfaces[variant] = {h.name: describe(h, interface, pid)
                                       for h, pid in zip((a, b), pids[variant], strict=True)}
            server = b.popen(["iperf3", "-s"], tmp_path / "iperf3.log")
            wait_for(lambda: a.run("iperf3", "-c", b.address, "-t", "1", check=False).returncode == 0, 10,
                     what="the iperf3 server")
            load = os.getloadavg()
            rounds = []
            for index in range(args.rounds):
                order = variants[index % len(variants):] + variants[:index % len(variants)]
                for variant in order:
                    rounds.append({"round": index, **measure((a, b), targets, pids, variant, args)})
            load_after = os.getloadavg()
        finally:
            if server is not None:
                server.kill()
                server.wait()
            stop_all(nodes, control)
    return {"bench": "dataplane", "rounds": args.rounds, "seconds": args.seconds, "pings": args.pings,
            "agents_stopped": args.agents_stopped,
            "cpu_count": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load],
            "loadavg_after": [round(x, 2) for x in load_after],
            "wireguard_go": labs.sh("wireguard-go", "--version", check=False).stdout.strip(),
            "controls": args.controls, "interfaces": interfaces, **summarize(rounds, variants), "per_round": rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--agents-stopped", action="store_true",
                        help="stop both agents once the mesh is up (WireGuard stays): the mesh without their work")
    parser.add_argument("--controls", action="store_true",
                        help="two more hand-made pairs: `twin` (identical to hand: the method's noise floor) and "
                             "`meshlike` (keepalive, /32 address and route as the agent sets them)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = labs.can_run()
    if reason:
        raise SystemExit(f"dataplane: {reason}")
    result = run(args)
    record.save("dataplane", result, args.json)
    if not args.json:
        for variant, figures in result["medians"].items():
            print(f"{variant:9} {figures['gbit_s']:6.2f} Gbit/s  rtt {figures['rtt_avg_ms']:.3f} ms "
                  f"(min {figures['rtt_min_ms']:.3f})")
        print(f"mesh/hand {result['mesh_vs_hand_ratio']} (per wireguard-go core "
              f"{result['mesh_vs_hand_efficiency_ratio']}; per round {result['mesh_vs_hand_per_round']}), "
              f"load {result['loadavg_before']} -> {result['loadavg_after']}")
        for control in (c for c in CONTROLS if f"{c}_vs_hand_ratio" in result):
            print(f"{control}/hand {result[f'{control}_vs_hand_ratio']} "
                  f"(per round {result[f'{control}_vs_hand_per_round']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
