"""The agent on real wireguard-go in network namespaces, against a real control plane."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from meshcommon.contract.version import VERSION
from testbed.meshlab import MESHAGENT, Node, all_ping, converged, lab_marks, mesh, on_lab, wait_for

pytestmark = lab_marks()


def test_three_nodes_converge_and_ping_each_other(lab, lab_control, tmp_path):
    nodes = mesh(lab, lab_control, tmp_path, 3)
    started = time.monotonic()
    try:
        wait_for(lambda: converged(nodes), 30, what="mesh convergence")
    finally:
        for node in nodes:
            print(node.host.name, node.host.wg_peers(), node.host.routes())
    wait_for(lambda: all_ping(nodes), 20, what="pings over the mesh")
    print(f"converged and pinging in {time.monotonic() - started:.1f}s")
    status = nodes[0].status()
    assert status["control"] == "connected" and status["mesh_ip"] == nodes[0].identity["mesh_ip"]
    assert {p["name"] for p in status["peers"]} == {"n1", "n2"}
    assert all(p["online"] and p["latest_handshake"] for p in status["peers"])
    assert status["backend"] == "userspace"

    # A joining node reaches every agent's WireGuard config within 1 s of the control plane's change.
    joiner = Node(lab.add_host("n3"), tmp_path / "state-n3", [lab_control.url], tmp_path / "join.token").start()
    nodes.append(joiner)
    wait_for(lambda: converged(nodes), 30, what="convergence with the joiner")
    registered = next(e for e in lab_control.events("node_registered") if e["node_name"] == "n3")
    for node in nodes[:3]:
        added = next(e for e in node.events("peer_added") if e["peer"] == "n3")
        lag = (datetime.fromisoformat(added["ts"]) -
               datetime.fromisoformat(registered["ts"])).total_seconds()
        print(f"{node.host.name}: joiner in WireGuard config {lag * 1000:.0f} ms after registration")
        assert lag < 1.0

    # `meshagent down --leave` after stopping the agent: interface gone, node deregistered,
    # and every other node drops it.
    leaving = nodes[0]
    leaving.stop()
    assert leaving.host.wg_peers(), "stopping the agent must keep the data plane"
    down = leaving.host.run(MESHAGENT, "down", "--state-dir", str(leaving.state_dir), "--leave", check=False)
    assert down.returncode == 0 and "left the mesh" in down.stdout, down.stdout + down.stderr
    assert leaving.host.run("ip", "link", "show", "mesh0", check=False).returncode != 0
    listed = httpx.get(lab_control.url + "/v1/nodes", headers=lab_control.admin).json()["nodes"]
    assert leaving.host.name not in {n["name"] for n in listed}
    assert {n["agent_version"] for n in listed} == {VERSION}  # each agent names its version when it registers
    gone = leaving.identity_ip + "/32"
    wait_for(lambda: all(gone not in n.host.wg_peers().values() for n in nodes[1:]), 5,
             what="peers dropping the leaver")


NOOP_CHECK = """
import json, sys
from pathlib import Path
from agent.core import intake
from agent.reconcile import Reconciler
from agent.statedir import StateDir
state = StateDir(Path(sys.argv[1]))
netmap = intake.netmap_of(intake.from_cache(state.netmap()))
changes = Reconciler("mesh0", 51820, state, "userspace", state.private_key()).reconcile(netmap, announce_noop=False)
print(json.dumps([{"event": change.kind.value, **change.fields()} for change in changes]))
"""


def pings_without_loss(a: Node, b: Node, seconds: int) -> subprocess.Popen:
    return subprocess.Popen([*a.host.prefix(), "ping", "-n", "-q", "-c", str(seconds), "-i", "1", "-W", "1",
                             b.identity["mesh_ip"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_crash_restart_and_control_plane_outage(lab, lab_control, tmp_path):
    nodes = mesh(lab, lab_control, tmp_path, 3)
    wait_for(lambda: converged(nodes), 30, what="mesh convergence")
    wait_for(lambda: all_ping(nodes), 20, what="pings over the mesh")

    # A second pass over an unchanged state makes no wg or netlink change, and converging added
    # each peer once and never rewrote one (no fight over endpoints or allowed IPs). The pass reads
    # the netmap cache, written within a second of the last netmap.
    wait_for(lambda: nodes[0].cached_revision() == nodes[0].status()["revision"], 5, what="netmap cache written")
    check = nodes[0].host.run(sys.executable, "-c", NOOP_CHECK, str(nodes[0].state_dir))
    assert json.loads(check.stdout) == [], check.stdout + check.stderr
    assert sorted(e["peer"] for e in nodes[0].events("peer_added")) == ["n1", "n2"], nodes[0].events("peer_added")
    assert nodes[0].events("peer_updated") == [] and nodes[0].events("apply_error") == []

    # Crash n2: every process killed, its interface gone with wireguard-go.
    crashed, alive = nodes[2], nodes[:2]
    crashed_ip = crashed.identity["mesh_ip"] + "/32"
    started = time.monotonic()
    crashed.host.crash()
    wait_for(lambda: all(crashed_ip not in n.host.wg_peers().values() and crashed_ip not in n.host.routes()
                         for n in alive), 6.0 + 2.0 + 2.0, what="crashed peer removal")
    removal = time.monotonic() - started
    print(f"crashed peer removed everywhere after {removal:.1f}s")
    assert removal <= 6.0 + 2.0 + 2.0  # offline threshold + 2 s, + the last heartbeat interval
    assert any(e["reason"] == "offline" for e in alive[0].events("peer_removed"))

    # Restart it: same identity, same mesh IP, back in every peer's config.
    crashed.start()
    wait_for(lambda: converged(nodes), 30, what="re-convergence after restart")
    assert crashed.identity["mesh_ip"] + "/32" == crashed_ip
    assert len(crashed.events("node_enrolled")) == 1
    wait_for(lambda: all_ping(nodes), 20, what="pings after restart")

    # Control plane down: the data plane keeps forwarding, with no loss, for 60 s.
    lab_control.stop()
    # (n2 is restarted meanwhile, so the loss-free probes run between n0 and n1.)
    probes = [pings_without_loss(nodes[0], nodes[1], 60), pings_without_loss(nodes[1], nodes[0], 60)]
    time.sleep(5)
    # Meanwhile restart an agent with the control plane still down: the cached netmap restores its mesh.
    nodes[2].stop()
    assert nodes[2].host.run("ip", "link", "del", "mesh0", check=False).returncode == 0
    nodes[2].start()
    wait_for(lambda: nodes[2].events("netmap_restored"), 15, what="netmap restored from cache")
    wait_for(lambda: nodes[0].host.ping(nodes[2].identity["mesh_ip"], count=1).returncode == 0, 15,
             what="ping to the agent restarted while the control plane is down")
    for probe in probes:
        out, _ = probe.communicate(timeout=90)
        assert " 0% packet loss" in out, out
    assert all(n.status()["control"] == "unreachable" for n in nodes[:2])
    assert not any(n.events("peer_removed")[-1:] and n.events("peer_removed")[-1]["ts"] > n.events(
        "control_unreachable")[-1]["ts"] for n in nodes[:2])

    # Control plane back: agents reconnect, nobody is declared offline (grace), the mesh stays whole.
    lab_control.start()
    wait_for(lambda: all(n.status().get("control") == "connected" for n in nodes), 20, what="reconnection")
    time.sleep(8)  # past the offline threshold
    assert lab_control.events("node_offline") == [] or all(
        e["ts"] < lab_control.events("liveness_grace")[-1]["ts"] for e in lab_control.events("node_offline"))
    assert converged(nodes) and all_ping(nodes)


def test_agent_fails_over_to_another_control_instance(lab, tmp_path, pg_admin_url):
    if pg_admin_url is None:
        pytest.skip("PostgreSQL is not installed")
    from testbed import pg
    db_url = pg.fresh_database(pg_admin_url)
    instances = []
    for name in ("a", "b"):
        instances.append(on_lab(lab, tmp_path / f"control-{name}", db_url).start())
    first, second = instances
    try:
        token_file = tmp_path / "join.token"
        token_file.write_text(first.join_token() + "\n")
        nodes = [Node(lab.add_host(f"n{i}"), tmp_path / f"state-n{i}", [first.url, second.url], token_file).start()
                 for i in range(2)]
        wait_for(lambda: converged(nodes), 30, what="mesh convergence")
        identities = [n.identity for n in nodes]
        probe = pings_without_loss(nodes[0], nodes[1], 15)
        first.stop()
        wait_for(lambda: all(n.status().get("control_url") == second.url and n.status().get("control") == "connected"
                             for n in nodes), 20, what="failover to the second instance")
        out, _ = probe.communicate(timeout=60)
        assert " 0% packet loss" in out, out
        assert [n.identity["node_id"] for n in nodes] == [i["node_id"] for i in identities]
        assert all(len(n.events("node_enrolled")) == 1 and not n.events("peer_removed") for n in nodes)
        # The second instance now carries the membership: a change made there reaches the agents.
        httpx.delete(f"{second.url}/v1/nodes/{identities[1]['node_id']}", headers=second.admin).raise_for_status()
        wait_for(lambda: nodes[0].host.wg_peers() == {}, 10, what="removal through the second instance")
        # The event is logged once the pass that removed the peer has finished: wait for it too.
        wait_for(lambda: nodes[0].events("peer_removed"), 5, what="the peer_removed event")
        assert nodes[0].events("peer_removed")[-1]["reason"] == "deleted"
    finally:
        for proc in instances:
            proc.stop()


def test_an_idle_agent_writes_nothing_and_a_change_is_written(lab, lab_control, tmp_path):
    """The agents' own count of WireGuard and netlink writes (`writes` in their status) stays still
    over recheck passes and heartbeats while nothing changes, and moves with a change."""
    nodes = mesh(lab, lab_control, tmp_path, 3)
    wait_for(lambda: converged(nodes), 30, what="mesh convergence")
    wait_for(lambda: all_ping(nodes), 20, what="pings over the mesh")
    time.sleep(3)  # the passes of the last netmap events are over
    before = [node.status()["writes"] for node in nodes]
    # At least: key and port, two peers; the address, the link up, two routes.
    assert all(w["wireguard"] >= 3 and w["netlink"] >= 4 for w in before), before
    time.sleep(2.5 * 10)  # RECHECK_INTERVAL: at least two recheck passes, a dozen heartbeats (every 2 s)
    assert [node.status()["writes"] for node in nodes] == before, "an idle agent wrote something"

    # Drift (a route deleted by hand) is repaired by the next recheck pass: one netlink write.
    gone = nodes[1].identity["mesh_ip"] + "/32"
    nodes[0].host.run("ip", "route", "del", gone, "dev", "mesh0", "proto", "77")
    wait_for(lambda: gone in nodes[0].host.routes(), 15, what="the route restored")
    wait_for(lambda: nodes[0].status()["writes"]["netlink"] == before[0]["netlink"] + 1, 5, what="the count")
    assert nodes[0].status()["writes"]["wireguard"] == before[0]["wireguard"]

    # A membership change (n2 deleted by an admin): one peer removed and one route, on every other agent.
    deleted = nodes[2].identity  # read first: the removed agent forgets its identity
    removed = deleted["mesh_ip"] + "/32"
    httpx.delete(f"{lab_control.url}/v1/nodes/{deleted['node_id']}", headers=lab_control.admin).raise_for_status()
    wait_for(lambda: all(removed not in n.host.wg_peers().values() for n in nodes[:2]), 10, what="the removal")
    time.sleep(1)
    after = [node.status()["writes"] for node in nodes[:2]]
    assert [w["wireguard"] - b["wireguard"] for w, b in zip(after, before, strict=False)] == [1, 1]
    assert after[1]["netlink"] - before[1]["netlink"] == 1


def test_an_agent_restarted_or_killed_adopts_what_it_finds_and_no_ping_is_lost(lab, lab_control, tmp_path):
    """An upgrade or a crash restarts the agent: it takes over the interface, peers and routes it
    finds and writes nothing that is already right, so the data plane never notices (10 pings a
    second both ways across a stop and start, then across a kill -9 and start)."""
    nodes = mesh(lab, lab_control, tmp_path, 3)
    wait_for(lambda: converged(nodes), 30, what="mesh convergence")
    wait_for(lambda: all_ping(nodes), 20, what="pings over the mesh")
    target, other = nodes[1], nodes[0]
    for how in (signal.SIGTERM, signal.SIGKILL):
        probes = [subprocess.Popen([*a.host.prefix(), "ping", "-n", "-q", "-c", "150", "-i", "0.1", "-W", "1",
                                    b.identity["mesh_ip"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for a, b in ((other, target), (target, other))]
        time.sleep(2)
        log_before = target.log.read_text()
        os.killpg(target.proc.pid, how)  # the agent's own process group: wireguard-go has a session of its own
        target.proc.wait(timeout=20)
        target.start()
        wait_for(lambda: target.status().get("control") == "connected", 20, what=f"reconnection after {how.name}")
        for probe in probes:
            out, _ = probe.communicate(timeout=60)
            assert " 0% packet loss" in out, f"{how.name}: {out}"
        written = json.loads(target.host.run(MESHAGENT, "status", "--state-dir", str(target.state_dir), "--json",
                                             check=True).stdout)["writes"]
        assert written == {"wireguard": 0, "netlink": 0}, f"{how.name}: the restarted agent wrote {written}"
        restarted = target.log.read_text()[len(log_before):]
        touched = ("interface_created", "address_added", "link_up", "device_set", "peer_added", "peer_updated",
                   "peer_removed", "route_added", "route_removed", "address_removed")
        assert not any(f'"{event}"' in restarted for event in touched), restarted
