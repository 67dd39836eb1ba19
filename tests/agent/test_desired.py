"""Desired state: only online peers, each with exactly its mesh IP, and a host route each."""
from hypothesis import given
from hypothesis import strategies as st

from agent.core.desired import desired_state, host_prefix
from meshcommon.contract.timings import KEEPALIVE
from tests.agent.data import entry, netmap


def test_only_online_peers_are_configured_with_a_host_route_each():
    entries = {"a": entry("a", "100.64.0.2"), "b": entry("b", "100.64.0.3", online=False)}
    desired = desired_state(netmap(entries), "mesh0", 51820)
    assert [p.allowed_ips for p in desired.peers] == [("100.64.0.2/32",)]
    assert desired.routes == {"100.64.0.2/32"} and desired.address == "100.64.0.1/32"
    assert (desired.interface, desired.listen_port, desired.peers[0].keepalive) == ("mesh0", 51820, KEEPALIVE)
    assert desired.peers[0].endpoint == "10.9.0.2:51820" and desired.peers[0].name == "a"


def test_ipv6_mesh_ips_are_host_prefixes_too():
    assert host_prefix("fd00::1") == "fd00::1/128" and host_prefix("100.64.0.1") == "100.64.0.1/32"


@given(st.dictionaries(st.integers(2, 200), st.booleans(), max_size=12))
def test_peers_are_sorted_by_key_and_routes_are_their_allowed_ips(online):
    desired = desired_state(netmap({f"n{i}": entry(f"n{i}", f"100.64.0.{i}", up) for i, up in online.items()}),
                            "mesh0", 51820)
    assert [p.public_key for p in desired.peers] == sorted(p.public_key for p in desired.peers)
    assert desired.routes == {f"100.64.0.{i}/32" for i, up in online.items() if up}
    assert desired.routes == {ip for p in desired.peers for ip in p.allowed_ips}
