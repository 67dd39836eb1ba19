"""Meshes across routed sites and NATs, on real wireguard-go, against a real control plane.

One lab: two public hosts, a routed site, and two sites behind different masquerading NAT routers.
Agents start without `--endpoint`, as a user behind NAT would: a natted node advertises its private
address, and the control plane offers its reflexive one (the NAT's address, the node's port).
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from testbed.control_process import MESHCTL
from testbed.meshlab import Node, converged, lab_marks, on_lab, wait_for

pytestmark = lab_marks()
STEADY = 75  # seconds of pinging: past three keepalives and seven drift repairs


def health(control) -> list[dict]:
    """`meshctl health --json`, as an operator runs it."""
    done = subprocess.run([MESHCTL, "health", "--json", "--control", control.url, "--admin-token-file",
                           str(control.state_dir / "admin.token")], capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 1), done.stderr
    pairs = json.loads(done.stdout)["pairs"]
    assert (done.returncode == 1) == bool(pairs), "exit 1 exactly when some pair has no working tunnel"
    return pairs


def endpoint_rewrites(node: Node, peer: str) -> list[dict]:
    return [e for e in node.events("peer_updated") if e["peer"] == peer and e["reason"] == "endpoint"]


@pytest.fixture
def sites(lab, tmp_path):
    control = on_lab(lab, tmp_path / "control").start()
    token_file = tmp_path / "join.token"
    token_file.write_text(control.join_token() + "\n")
    routed, nat1, nat2 = lab.add_site("routed", "routed"), lab.add_site("nat1", "nat"), lab.add_site("nat2", "nat")
    placed = [("p1", None), ("p2", None), ("r1", routed), ("a1", nat1), ("b1", nat2)]
    nodes = {name: Node(lab.add_host(name, site), tmp_path / f"state-{name}", [control.url], token_file).start()
             for name, site in placed}
    try:
        yield control, nodes
    finally:
        for node in nodes.values():
            node.stop()
        control.stop()


def pinger(node: Node, address: str, seconds: float) -> subprocess.Popen:
    count = int(seconds / 0.5)
    args = ["ping", "-n", "-q", "-c", str(count), "-i", "0.5", "-W", "1", address]
    return subprocess.Popen([*node.host.prefix(), *args], stdout=subprocess.PIPE, text=True)


def lost(proc: subprocess.Popen) -> tuple[int, int]:
    out, _ = proc.communicate(timeout=STEADY * 3)
    line = next(line for line in out.splitlines() if "packets transmitted" in line)
    sent, received = int(line.split()[0]), int(line.split(", ")[1].split()[0])
    return sent, sent - received


def test_sites_and_nats_mesh_stay_up_and_a_cut_is_named_then_cleared(lab, sites):
    control, nodes = sites
    everyone = list(nodes.values())
    wait_for(lambda: converged(everyone), 60, what="WireGuard config on every node")
    ip = {name: node.identity["mesh_ip"] for name, node in nodes.items()}
    started = time.monotonic()
    wait_for(lambda: all(a.host.ping(ip[b], count=1, wait=1).returncode == 0
                         for a_name, a in nodes.items() for b in nodes if b != a_name), 90,
             step=1, what="every pair pinging, across the routed site and both NATs")
    print(f"all 20 directions ping {time.monotonic() - started:.1f}s after convergence")

    a1_seen = next(p for p in nodes["p1"].status()["peers"] if p["name"] == "a1")
    assert a1_seen["endpoint"] == f"{nodes['a1'].host.address}:51820", "a natted node advertises its private address"
    assert a1_seen["reflexive_endpoint"] == f"{lab.seen_as(nodes['a1'].host)}:51820"
    assert a1_seen["endpoint_source"] in ("reflexive", "roamed")
    b1_from_a1 = next(p for p in nodes["a1"].status()["peers"] if p["name"] == "b1")
    assert b1_from_a1["current_endpoint"] == f"{lab.seen_as(nodes['b1'].host)}:51820", \
        "two natted nodes reach each other at their reflexive endpoints"
    wait_for(lambda: health(control) == [], 30, what="an empty health list on a working mesh")

    # Steady state: natted nodes stay reachable from public ones and from each other while
    # keepalives and drift repairs come and go, and meanwhile a cut between two nodes that both
    # still reach the control plane is named by `meshctl health`, then cleared after the heal.
    mark = {(name, peer): len(endpoint_rewrites(node, peer)) for name, node in nodes.items() for peer in nodes}
    probes = [pinger(nodes["p1"], ip["a1"], STEADY + 90), pinger(nodes["p2"], ip["b1"], STEADY + 90),
              pinger(nodes["a1"], ip["b1"], STEADY + 90), pinger(nodes["r1"], ip["a1"], STEADY + 90)]
    cut_at = time.monotonic()
    lab.cut(nodes["p2"].host, nodes["r1"].host)
    found = wait_for(lambda: [p for p in health(control) if set(p["names"]) == {"p2", "r1"}], 120, step=2,
                     what="the cut pair in meshctl health")
    print(f"cut named after {time.monotonic() - cut_at:.0f}s: {found}")
    assert all(set(p["names"]) == {"p2", "r1"} for p in health(control)), "only the cut pair is listed"
    assert found[0]["reason"] in ("nothing received", "handshake expired")
    healed_at = time.monotonic()
    lab.heal(nodes["p2"].host, nodes["r1"].host)
    wait_for(lambda: health(control) == [], 90, step=2, what="the healed pair leaving meshctl health")
    print(f"heal cleared after {time.monotonic() - healed_at:.0f}s")
    wait_for(lambda: nodes["p2"].host.ping(ip["r1"], count=1, wait=1).returncode == 0, 30, step=1,
             what="the healed pair pinging again")

    for probe in probes:
        sent, missing = lost(probe)
        print(f"steady pings: {sent} sent, {missing} lost")
        assert missing == 0
    cut_pair = {("p2", "r1"), ("r1", "p2")}  # whose sessions may have expired during the cut
    rewrites = {(name, peer): len(endpoint_rewrites(node, peer)) - mark[(name, peer)]
                for name, node in nodes.items() for peer in nodes if (name, peer) not in cut_pair}
    assert not any(rewrites.values()), f"roamed endpoints rewritten while their handshakes were fresh: {rewrites}"
