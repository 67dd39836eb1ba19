"""Apply on real wireguard-go (a lab host): peers written one by one over UAPI, only what the plan
names, "already so" as success, a roamed endpoint kept, a failing peer reported alone."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from testbed.meshlab import lab_marks

pytestmark = lab_marks()


def scenario(state_dir: str) -> dict:
    """Run in the lab host (its network and mount namespaces): what each apply reached."""
    from agent import wg
    from agent.apply import Writes, apply
    from agent.core.diff import diff
    from agent.core.model import DesiredState, WgPeer
    from agent.observe import observe
    from meshcommon.contract import keys

    private = keys.new_private_key()
    names = {}

    def peer(name: str, ip: str, endpoint: str | None, keepalive: int = 25) -> WgPeer:
        public = keys.public_key_of(keys.new_private_key())
        names[public] = name
        return WgPeer(public, (f"{ip}/32",), endpoint, keepalive, name)

    def state(*peers: WgPeer) -> DesiredState:
        return DesiredState("mesh0", "100.64.0.1/32", 51820, tuple(sorted(peers, key=lambda p: p.public_key)),
                            frozenset(ip for p in peers for ip in p.allowed_ips), keys.public_key_of(private))

    writes = Writes()

    def run(desired: DesiredState, plan=None) -> dict:
        plan = plan or diff(observe("mesh0"), desired)
        before = (writes.wireguard, writes.netlink)
        result = apply(plan, desired, backend="userspace", private_key=private,
                       wg_log=f"{state_dir}/wireguard-go.log", writes=writes)
        return {"done": [[s.kind.value, names.get(s.target, s.target)] for s in result.done],
                "failed": [[f.step.kind.value, names.get(f.step.target, f.step.target), f.reason]
                           for f in result.failed],
                "writes": [writes.wireguard - before[0], writes.netlink - before[1]],
                "converged": diff(observe("mesh0"), desired).empty}

    a, b, c = peer("a", "100.64.0.2", "10.9.0.2:51820"), peer("b", "100.64.0.3", None), \
        peer("c", "100.64.0.4", "10.9.0.4:51820")
    found = {"created": run(state(a, b, c))}
    found["again"] = run(state(a, b, c))
    # WireGuard learned b's endpoint by itself (roaming); then b's keepalive changes, c leaves, d joins.
    with wg.Uapi("mesh0") as connection:
        connection.set(f"set=1\npublic_key={keys.decode32(b.public_key, 'key').hex()}\n"
                       "endpoint=10.9.0.99:51820\n\n".encode())
    d = peer("d", "100.64.0.5", "[fd00::5]:51820")
    changed = state(a, replace(b, keepalive=0), d)
    found["changed"] = run(changed)
    found["b_endpoint"] = next(p.endpoint for p in observe("mesh0").peers if p.public_key == b.public_key)
    found["listen_port"] = observe("mesh0").listen_port
    # Already so: d added again, c removed again.
    already = diff(observe("mesh0"), state(a, replace(b, keepalive=0), c))
    found["already"] = run(changed, replace(already, peers_added=(d,), add_routes=frozenset(),
                                            peers_removed=(c,), remove_routes=frozenset()))
    # A peer WireGuard refuses (a keepalive past 16 bits) fails alone; the next one is still added.
    e, f = peer("e", "100.64.0.6", None, keepalive=70000), peer("f", "100.64.0.7", None)
    found["refused"] = run(state(a, replace(b, keepalive=0), d, e, f))
    found["peers"] = sorted(names[p.public_key] for p in observe("mesh0").peers)
    return found


def test_apply_writes_only_the_peers_that_change(lab, tmp_path):
    host = lab.add_host("n0")
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import json, sys; sys.path.insert(0, {root!r}); from tests.agent.test_apply import scenario; "
            f"print(json.dumps(scenario({str(tmp_path)!r})))")
    done = host.run(sys.executable, "-c", code, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    print(json.dumps(found, indent=1))

    created = found["created"]
    assert created["failed"] == [] and created["converged"]
    wireguard = [s for s in created["done"] if s[0].startswith(("peer", "device", "interface"))]
    assert wireguard[:2] == [["interface_created", "mesh0"], ["device_set", "mesh0"]]
    assert sorted(wireguard[2:]) == [["peer_added", "a"], ["peer_added", "b"], ["peer_added", "c"]]
    assert created["writes"] == [5, 5]  # wireguard-go, key and port, 3 peers; address, link up, 3 routes

    assert found["again"] == {"done": [], "failed": [], "writes": [0, 0], "converged": True}

    changed = found["changed"]
    assert changed["failed"] == [] and changed["converged"]
    assert changed["done"] == [["peer_added", "d"], ["peer_updated", "b"], ["route_added", "100.64.0.5/32"],
                               ["peer_removed", "c"], ["route_removed", "100.64.0.4/32"]], "additions first"
    assert changed["writes"] == [3, 2]
    assert found["b_endpoint"] == "10.9.0.99:51820", "an update without an endpoint keeps WireGuard's own"
    assert found["listen_port"] == 51820

    assert found["already"]["failed"] == [] and found["already"]["done"] == [["peer_added", "d"],
                                                                             ["peer_removed", "c"]]

    refused = found["refused"]
    [(step, name, reason)] = refused["failed"]
    assert (step, name) == ("peer_added", "e") and "errno=" in reason
    assert ["peer_added", "f"] in refused["done"] and "f" in found["peers"]
