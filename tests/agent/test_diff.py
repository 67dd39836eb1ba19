"""Diff: the plan that converges observed on desired, and nothing when they agree."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.desired import desired_state
from agent.core.diff import diff, same_endpoint
from agent.core.model import DesiredState, Observed, Plan, WgPeer
from tests.agent.data import entry, key, netmap


def converged(desired: DesiredState) -> Observed:
    return Observed(True, True, frozenset({desired.address}), desired.listen_port, desired.peers, desired.routes)


def test_identical_state_plans_nothing():
    desired = desired_state(netmap({"a": entry("a", "100.64.0.2")}), "mesh0", 51820)
    assert diff(converged(desired), desired).empty and diff(converged(desired), desired) == Plan()


def test_missing_interface_plans_everything():
    desired = desired_state(netmap({"a": entry("a", "100.64.0.2")}), "mesh0", 51820)
    p = diff(Observed(exists=False), desired)
    assert p.create_interface and p.set_up and p.sync_wireguard and p.add_routes == desired.routes
    assert p.add_addresses == {desired.address}
    assert [peer.public_key for peer in p.peers_added] == [desired.peers[0].public_key]


def test_a_foreign_address_is_replaced_and_a_changed_port_resynced():
    desired = desired_state(netmap({}), "mesh0", 51820)
    observed = Observed(True, True, frozenset({"100.64.0.9/32"}), 51000)
    p = diff(observed, desired)
    assert p.add_addresses == {desired.address} and p.remove_addresses == {"100.64.0.9/32"} and p.sync_wireguard


def test_the_port_is_planned_only_when_it_differs_and_the_key_only_when_it_is_not_ours():
    me = key()
    desired = desired_state(netmap({}), "mesh0", 51820, public_key=me)
    fresh = diff(Observed(True, True, frozenset({desired.address}), 39468), desired)  # a new wireguard-go
    assert fresh.listen_port == 51820 and fresh.set_private_key and fresh.sync_wireguard
    ours = Observed(True, True, frozenset({desired.address}), 51820, public_key=me)
    assert diff(ours, desired).empty and diff(ours, desired).listen_port is None
    unchecked = desired_state(netmap({}), "mesh0", 51820)
    assert diff(Observed(True, True, frozenset({desired.address}), 51820), unchecked).empty


def test_hostname_endpoints_are_not_fought_over():
    desired_peer = WgPeer(key(), ("100.64.0.2/32",), "peer.example:51820", 25)
    observed_peer = WgPeer(desired_peer.public_key, ("100.64.0.2/32",), "192.0.2.7:51820", 25)
    desired = DesiredState("mesh0", "100.64.0.1/32", 51820, (desired_peer,), frozenset({"100.64.0.2/32"}))
    assert diff(converged(desired), desired).empty
    assert diff(Observed(True, True, frozenset({desired.address}), 51820, (observed_peer,), desired.routes),
                desired).empty


@pytest.mark.parametrize("desired, observed, same", [
    (None, "192.0.2.1:1", True),
    ("192.0.2.1:51820", "192.0.2.1:51820", True),
    ("[fd00::0001]:51820", "[fd00::1]:51820", True),
    ("192.0.2.1:51820", "192.0.2.2:51820", False),
    ("192.0.2.1:51820", "192.0.2.1:51821", False),
    ("192.0.2.1:51820", None, False),
])
def test_same_endpoint(desired, observed, same):
    assert same_endpoint(desired, observed) is same


def test_a_changed_endpoint_or_keepalive_updates_the_peer():
    peer = WgPeer(key(), ("100.64.0.2/32",), "192.0.2.1:51820", 25)
    desired = DesiredState("mesh0", "100.64.0.1/32", 51820, (peer,), frozenset({"100.64.0.2/32"}))
    for observed_peer in (WgPeer(peer.public_key, peer.allowed_ips, "192.0.2.9:51820", 25),
                          WgPeer(peer.public_key, peer.allowed_ips, peer.endpoint, 0)):
        observed = Observed(True, True, frozenset({desired.address}), 51820, (observed_peer,), desired.routes)
        assert diff(observed, desired).peers_updated == ((observed_peer, peer),)


ips = st.sets(st.integers(min_value=2, max_value=200), max_size=12)


@given(ips, ips, st.data())
def test_plan_converges_peers_and_routes(before, after, data):
    pool = {i: entry(f"n{i}", f"100.64.0.{i}", online=data.draw(st.booleans())) for i in before | after}
    old = desired_state(netmap({f"n{i}": pool[i] for i in before}), "mesh0", 51820)
    new = desired_state(netmap({f"n{i}": pool[i] for i in after}), "mesh0", 51820)
    p = diff(converged(old), new)
    have = {peer.public_key for peer in old.peers}
    have = (have | {peer.public_key for peer in p.peers_added}) - {peer.public_key for peer in p.peers_removed}
    assert have == {peer.public_key for peer in new.peers}
    assert (old.routes | p.add_routes) - p.remove_routes == new.routes
    assert p.sync_wireguard == (set(old.peers) != set(new.peers))
    assert p.empty == (set(old.peers) == set(new.peers))
