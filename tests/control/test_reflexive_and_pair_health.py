"""Paths between nodes as the control plane sees them (pure): client address, reflexive endpoint, pair health."""
import ipaddress

import pytest

from control.rules.pair_health import nat as behind_nat
from control.rules.pair_health import pair_reason, unhealthy_pairs
from control.rules.records import NodeRecord, TunnelDown
from control.rules.reflexive import client_address, counted_as, parse_networks, reflexive_endpoint

PROXY = (ipaddress.ip_network("10.9.0.0/16"),)


def node(node_id: str, **extra) -> NodeRecord:
    fields = {"id": node_id, "name": f"name-{node_id}", "public_key": f"{node_id:A<43}=", "mesh_ip": "100.64.0.1",
              "endpoint": "192.0.2.1:51820", "listen_port": 51820, "token_hash": "0" * 64, "created_at": 1.0,
              "last_seen": 1.0, "online": True, "applied_revision": None, "changed_revision": 1,
              "reflexive_endpoint": "192.0.2.1:51820"}
    return NodeRecord(**{**fields, **extra})


def test_the_connection_s_peer_is_the_address_whatever_a_header_claims():
    assert client_address("198.51.100.7", "203.0.113.9", ()) == "198.51.100.7"
    assert client_address("198.51.100.7", "203.0.113.9", PROXY) == "198.51.100.7"  # not a trusted proxy
    assert client_address(None, None, ()) is None and client_address("garbage", None, ()) is None


def test_behind_a_trusted_proxy_the_last_hop_it_did_not_write_is_the_address():
    assert client_address("10.9.0.1", "203.0.113.9", PROXY) == "203.0.113.9"
    # The client wrote the leftmost entries itself: they prove nothing.
    assert client_address("10.9.0.1", "6.6.6.6, 203.0.113.9, 10.9.0.2", PROXY) == "203.0.113.9"
    assert client_address("10.9.0.1", "203.0.113.9, nonsense", PROXY) is None
    assert client_address("10.9.0.1", None, PROXY) == "10.9.0.1"
    assert client_address("10.9.0.1", "10.9.0.5", PROXY) == "10.9.0.1"


def test_trusted_proxies_parse_or_say_which_one_is_wrong():
    assert parse_networks("") == () and parse_networks(" 10.9.0.0/16, ::1 ") == (
        ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_network("::1/128"))
    with pytest.raises(ValueError, match=r"'proxy\.example'"):
        parse_networks("10.0.0.1,proxy.example")


@pytest.mark.parametrize(("address", "expected"), [
    ("198.51.100.7", "198.51.100.7:51820"), ("2001:db8::7", "[2001:db8::7]:51820"),
    ("::ffff:198.51.100.7", "198.51.100.7:51820"), ("127.0.0.1", None), ("::1", None), ("0.0.0.0", None),
    ("224.0.0.1", None), (None, None), ("x", None)])
def test_a_reflexive_endpoint_is_an_address_peers_could_reach_with_the_listen_port(address, expected):
    assert reflexive_endpoint(address, 51820) == expected


def test_a_node_is_behind_nat_when_its_requests_come_from_another_address_than_it_advertises():
    assert not behind_nat(node("a"))
    assert not behind_nat(node("a", reflexive_endpoint=None))
    assert behind_nat(node("a", endpoint="192.168.1.2:51820"))
    assert behind_nat(node("a", endpoint=None))
    assert not behind_nat(node("a", reflexive_endpoint="192.0.2.1:40000"))  # same address, another port


def test_a_healthy_mesh_has_no_unhealthy_pairs():
    assert unhealthy_pairs([node("a"), node("b")]) == []


def test_a_pair_is_listed_once_with_the_earliest_since_and_every_reporter():
    a = node("a", tunnels_down=(TunnelDown("b", 50.0, "no_traffic"),))
    b = node("b", tunnels_down=(TunnelDown("a", 40.0, "no_traffic"),))
    [pair] = unhealthy_pairs([b, a, node("c")])
    assert (pair.nodes, pair.names, pair.since, pair.reason, pair.reported_by) == (
        ("a", "b"), ("name-a", "name-b"), 40.0, "nothing received", ("a", "b"))


def test_reports_from_offline_nodes_and_about_unknown_nodes_count_for_nothing():
    stale = node("a", online=False, tunnels_down=(TunnelDown("b", 1.0, "no_traffic"),))
    ghost = node("c", tunnels_down=(TunnelDown("zz", 1.0, "no_traffic"), TunnelDown("c", 1.0, "no_traffic")))
    assert unhealthy_pairs([stale, node("b"), ghost]) == []


def test_pairs_are_ordered_by_since():
    a = node("a", tunnels_down=(TunnelDown("c", 30.0, "no_handshake"), TunnelDown("b", 20.0, "no_traffic")))
    assert [pair.nodes for pair in unhealthy_pairs([a, node("b"), node("c")])] == [("a", "b"), ("a", "c")]


def test_the_reason_names_an_offline_peer_then_a_double_nat_then_what_the_agents_saw():
    natted = {"endpoint": "192.168.1.2:51820", "reflexive_endpoint": "198.51.100.7:51820"}
    assert pair_reason(node("a"), node("b", online=False), ["no_traffic"]) == "peer offline (name-b)"
    assert pair_reason(node("a", **natted), node("b", **natted), ["no_handshake"]).startswith("both behind NAT")
    assert pair_reason(node("a", **natted), node("b", **natted), ["no_traffic"]) == "nothing received"
    assert pair_reason(node("a", **natted), node("b"), ["no_handshake"]) == "no handshake"
    assert pair_reason(node("a"), node("b"), ["stale_handshake", "no_traffic"]) == "nothing received, handshake expired"


def test_a_request_from_a_mesh_ip_has_no_reflexive_endpoint():
    mesh = ipaddress.ip_network("100.64.0.0/10")
    assert reflexive_endpoint("100.64.0.7", 51820, mesh) is None
    assert reflexive_endpoint("::ffff:100.64.0.7", 51820, mesh) is None
    assert reflexive_endpoint("198.51.100.7", 51820, mesh) == "198.51.100.7:51820"


def test_the_forwarded_header_is_read_from_its_right_end_and_nothing_keyed_on_it_is_kept():
    assert not hasattr(client_address, "cache_info")  # any client could fill a cache keyed on its header
    padded = "203.0.113.9, " * 10_000 + "198.51.100.7"  # 130 KB: only its last 1,024 characters are read
    assert client_address("10.9.0.1", padded, PROXY) == "198.51.100.7"
    # Cut in the middle of an entry ("...12.3.4.5" read as "2.3.4.5"): the fragment is never an address.
    chain = "1" * 1020 + "12.3.4.5, 10.9.0.2"
    assert len(chain) > 1024 and client_address("10.9.0.1", chain, PROXY) is None
    too_many = ", ".join(["10.9.0.2"] * 20)  # more trusted hops than are looked at: origin unknown
    assert client_address("10.9.0.1", too_many, PROXY) is None
    assert client_address("10.9.0.1", "10.9.0.2, 10.9.0.3", PROXY) == "10.9.0.1"  # all proxies: the last one


@pytest.mark.parametrize("address, counted", [("198.51.100.7", "198.51.100.7"), ("::ffff:198.51.100.7", "198.51.100.7"),
                                              ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
                                              ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
                                              ("2001:db8:1:3::1", "2001:db8:1:3::/64"), (None, None), ("x", None)])
def test_a_connection_counts_for_its_ipv4_address_or_the_64_of_its_ipv6_one(address, counted):
    assert counted_as(address) == counted
