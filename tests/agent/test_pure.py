"""The agent's pure core: netmap intake, desired state, rendering and diff, without a kernel."""
import base64
import os

from hypothesis import given
from hypothesis import strategies as st

from agent import netmap as netmaps
from agent.desired import desired_state
from agent.diff import plan
from agent.model import Observed, WgPeer
from agent.render import render

PREFIX = "100.64.0.0/10"


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def entry(node_id: str, ip: str, online: bool = True, **extra) -> dict:
    return {"node_id": node_id, "name": node_id, "mesh_ip": ip, "public_key": key(),
            "endpoint": f"10.9.0.{ip.rsplit('.', 1)[1]}:51820", "online": online, **extra}


ME = entry("me", "100.64.0.1")


def header(revision: int = 5) -> dict:
    return {"revision": revision, "mesh_prefix": PREFIX, "self": ME}


def test_only_online_peers_are_configured_with_a_host_route_each():
    entries = {"a": entry("a", "100.64.0.2"), "b": entry("b", "100.64.0.3", online=False)}
    desired = desired_state(netmaps.parse(header(), entries), "mesh0", 51820)
    assert [p.allowed_ips for p in desired.peers] == [("100.64.0.2/32",)]
    assert desired.routes == {"100.64.0.2/32"} and desired.address == "100.64.0.1/32"


def test_bad_entries_are_rejected_and_never_configured():
    bad_key = entry("k", "100.64.0.4", public_key="A" * 43 + "=" + "x")
    outside = entry("o", "10.0.0.5")
    dup = entry("d", "100.64.0.2")
    broken_endpoint = entry("e", "100.64.0.7", endpoint="10.0.0.1:99999")
    entries = {"a": entry("a", "100.64.0.2"), "k": bad_key, "o": outside, "d": dup, "e": broken_endpoint,
               "junk": "not an object"}
    netmap = netmaps.parse(header(), entries)
    assert [p.node_id for p in netmap.peers] == ["a"]
    reasons = dict(netmap.rejected)
    assert set(reasons) == {"k", "o", "d", "e", "junk"}
    assert "outside" in reasons["o"] and "duplicate" in reasons["d"]


def test_a_name_can_never_inject_config_lines():
    evil = entry("x", "100.64.0.9", name="x\n[Peer]\nPublicKey = " + key())
    netmap = netmaps.parse(header(), {"x": evil})
    conf = render(desired_state(netmap, "mesh0", 51820), "PRIVATE", netmap.revision)
    assert conf.count("[Peer]") == 1 and conf.count("PublicKey") == 1
    assert "# ?" in conf


def test_render_is_a_valid_syncconf_file():
    netmap = netmaps.parse(header(7), {"a": entry("a", "100.64.0.2")})
    conf = render(desired_state(netmap, "mesh0", 51000), "PRIVATE", netmap.revision)
    assert "[Interface]\nPrivateKey = PRIVATE\nListenPort = 51000\n" in conf
    assert "AllowedIPs = 100.64.0.2/32\nEndpoint = 10.9.0.2:51820\nPersistentKeepalive = 25\n" in conf


def test_fold_applies_deltas_and_full_maps():
    entries = netmaps.fold({}, {"delta": False, "peers": [entry("a", "100.64.0.2"), entry("b", "100.64.0.3")]})
    entries = netmaps.fold(entries, {"delta": True, "upserted": [entry("c", "100.64.0.4")], "removed": ["a"]})
    assert sorted(entries) == ["b", "c"]


def test_identical_state_plans_nothing():
    netmap = netmaps.parse(header(), {"a": entry("a", "100.64.0.2")})
    desired = desired_state(netmap, "mesh0", 51820)
    observed = Observed(True, True, frozenset({desired.address}), 51820, desired.peers, desired.routes)
    assert plan(observed, desired).empty


def test_missing_interface_plans_everything():
    desired = desired_state(netmaps.parse(header(), {"a": entry("a", "100.64.0.2")}), "mesh0", 51820)
    p = plan(Observed(exists=False), desired)
    assert p.create_interface and p.sync_wireguard and p.add_routes == desired.routes
    assert [peer.public_key for peer in p.peers_added] == [desired.peers[0].public_key]


def test_hostname_endpoints_are_not_fought_over():
    desired_peer = WgPeer(key(), ("100.64.0.2/32",), "peer.example:51820", 25)
    observed_peer = WgPeer(desired_peer.public_key, ("100.64.0.2/32",), "192.0.2.7:51820", 25)
    desired = desired_state(netmaps.parse(header(), {}), "mesh0", 51820)
    desired = type(desired)(desired.interface, desired.address, 51820, (desired_peer,), frozenset({"100.64.0.2/32"}))
    observed = Observed(True, True, frozenset({desired.address}), 51820, (observed_peer,), desired.routes)
    assert plan(observed, desired).empty


ips = st.sets(st.integers(min_value=2, max_value=200), max_size=12)


@given(ips, ips, st.data())
def test_plan_converges_peers_and_routes(before, after, data):
    pool = {i: entry(f"n{i}", f"100.64.0.{i}", online=data.draw(st.booleans())) for i in before | after}
    old = desired_state(netmaps.parse(header(), {f"n{i}": pool[i] for i in before}), "mesh0", 51820)
    new = desired_state(netmaps.parse(header(), {f"n{i}": pool[i] for i in after}), "mesh0", 51820)
    observed = Observed(True, True, frozenset({old.address}), 51820, old.peers, old.routes)
    p = plan(observed, new)
    have = {peer.public_key for peer in old.peers}
    have = (have | {peer.public_key for peer in p.peers_added}) - {peer.public_key for peer in p.peers_removed}
    assert have == {peer.public_key for peer in new.peers}
    assert (old.routes | p.add_routes) - p.remove_routes == new.routes
    assert p.sync_wireguard == (set(old.peers) != set(new.peers))
