"""Paths (pure): which endpoint each peer gets, tried in order until a handshake, and roaming left alone."""
import msgspec
import pytest

from agent.core.endpoints import ATTEMPT, Attempt, Source, candidates, choose, due, source_of
from agent.core.model import PeerStats
from meshcommon.contract.timings import HANDSHAKE_FRESH
from meshcommon.contract.wire import NodeView

NOW = 10_000.0


def node(endpoint: str | None = "192.0.2.1:51820", reflexive: str | None = "192.0.2.1:51820") -> NodeView:
    return NodeView("p", "p", "100.64.0.2", "A" * 43 + "=", endpoint, 51820, True, reflexive)


PUBLIC = node()
NATTED = node("192.168.1.2:51820", "198.51.100.7:51820")
ME_PUBLIC = node("192.0.2.9:51820", "192.0.2.9:51820")
ME_NATTED = node("192.168.5.2:51820", "203.0.113.4:51820")
ME_SAME_SITE = node("192.168.1.3:51820", "198.51.100.7:51820")


def stats(endpoint: str | None, handshake_age: float | None) -> PeerStats:
    handshake = 0 if handshake_age is None else int(NOW - handshake_age)
    return PeerStats("A" * 43 + "=", endpoint, handshake, 10, 10)


@pytest.mark.parametrize(("peer", "me", "expected"), [
    (PUBLIC, ME_PUBLIC, ("192.0.2.1:51820",)),  # the same endpoint twice is one candidate
    (NATTED, ME_PUBLIC, ("198.51.100.7:51820", "192.168.1.2:51820")),  # behind NAT: reflexive first
    (NATTED, ME_NATTED, ("198.51.100.7:51820", "192.168.1.2:51820")),  # both natted: both punch at once
    (NATTED, ME_SAME_SITE, ("192.168.1.2:51820", "198.51.100.7:51820")),  # same site: its LAN address first
    (node("192.0.2.1:51820", None), ME_PUBLIC, ("192.0.2.1:51820",)),
    (node(None, "198.51.100.7:51820"), ME_PUBLIC, ("198.51.100.7:51820",)),
    (node(None, None), ME_PUBLIC, ())])
def test_candidates_in_the_order_to_try_them(peer, me, expected):
    assert candidates(peer, me) == expected


def test_a_new_peer_gets_its_first_candidate():
    choice = choose(NATTED, ME_PUBLIC, None, None, NOW)
    assert (choice.endpoint, choice.switched) == ("198.51.100.7:51820", False)  # WireGuard greets a new peer itself
    assert choice.attempt == Attempt(candidates(NATTED, ME_PUBLIC), NATTED.endpoint, 0, NOW)


def test_a_peer_with_nothing_to_try_waits_to_be_reached():
    assert choose(node(None, None), ME_PUBLIC, None, None, NOW).endpoint is None


@pytest.mark.parametrize("current", ["198.51.100.7:51820", "198.51.100.7:40001", "192.168.1.2:51820"])
def test_a_fresh_handshake_leaves_the_endpoint_alone_whatever_it_is(current):
    before = Attempt(candidates(NATTED, ME_PUBLIC), NATTED.endpoint, 1, NOW - 100)
    for attempt in (None, before):  # an agent that just started, and one that has been trying
        choice = choose(NATTED, ME_PUBLIC, stats(current, 30), attempt, NOW)
        assert choice.endpoint is None and choice.attempt.settled and not choice.switched


def test_without_a_handshake_each_candidate_is_tried_for_an_attempt_then_the_next_in_turn():
    offered = candidates(NATTED, ME_PUBLIC)
    attempt = choose(NATTED, ME_PUBLIC, stats(offered[0], None), None, NOW).attempt
    during = choose(NATTED, ME_PUBLIC, stats(offered[0], None), attempt, NOW + ATTEMPT - 1)
    assert (during.endpoint, during.switched, during.attempt) == (offered[0], False, attempt)
    after = choose(NATTED, ME_PUBLIC, stats(offered[0], None), attempt, NOW + ATTEMPT)
    assert (after.endpoint, after.switched, after.attempt.index) == (offered[1], True, 1)
    wrapped = choose(NATTED, ME_PUBLIC, stats(offered[1], None), after.attempt, NOW + 2 * ATTEMPT)
    assert (wrapped.endpoint, wrapped.attempt.index) == (offered[0], 0)


def test_a_session_that_went_stale_is_retried_on_the_path_that_worked_first():
    offered = candidates(NATTED, ME_PUBLIC)
    settled = choose(NATTED, ME_PUBLIC, stats(offered[1], 10), None, NOW).attempt
    stale = choose(NATTED, ME_PUBLIC, stats(offered[1], HANDSHAKE_FRESH + 1), settled, NOW + 1)
    assert (stale.endpoint, stale.switched, stale.attempt.settled) == (offered[1], True, False)


def test_a_peer_that_advertises_a_new_endpoint_is_set_to_it_even_during_a_live_session():
    attempt = choose(PUBLIC, ME_PUBLIC, stats("192.0.2.1:51820", 10), None, NOW).attempt
    moved = msgspec.structs.replace(PUBLIC, endpoint="192.0.2.77:51820", reflexive_endpoint="192.0.2.77:51820")
    choice = choose(moved, ME_PUBLIC, stats("192.0.2.1:51820", 10), attempt, NOW + 1)
    assert (choice.endpoint, choice.switched) == ("192.0.2.77:51820", True)


def test_a_new_reflexive_endpoint_alone_does_not_undo_a_live_session():
    attempt = choose(NATTED, ME_PUBLIC, stats("198.51.100.7:40001", 10), None, NOW).attempt
    rebound = msgspec.structs.replace(NATTED, reflexive_endpoint="198.51.100.8:51820")
    assert choose(rebound, ME_PUBLIC, stats("198.51.100.7:40001", 10), attempt, NOW + 1).endpoint is None


def test_where_an_endpoint_came_from():
    assert source_of(NATTED, "192.168.1.2:51820") is Source.ADVERTISED
    assert source_of(NATTED, "198.51.100.7:51820") is Source.REFLEXIVE
    assert source_of(NATTED, "198.51.100.7:40001") is Source.ROAMED
    assert source_of(NATTED, None) is None


def test_the_next_pass_is_due_when_the_earliest_unsettled_attempt_runs_out():
    attempts = {"a": Attempt(("x",), None, 0, NOW - 2), "b": Attempt(("x",), None, 0, NOW - 5),
                "c": Attempt(("x",), None, 0, NOW - 100, settled=True)}
    assert due(attempts, NOW) == ATTEMPT - 5 and due({}, NOW) is None
    assert due({"late": Attempt(("x",), None, 0, NOW - 100)}, NOW) == 0.0


def test_a_discovered_endpoint_is_advertised_only_when_peers_and_the_control_plane_can_use_it():
    from agent.core.endpoints import advertisable
    from tests.agent.data import netmap
    mesh = netmap({})
    assert advertisable("192.0.2.7:51820", mesh) == "192.0.2.7:51820"
    assert advertisable("192.0.2.7:51820", None) == "192.0.2.7:51820"
    assert advertisable(None, mesh) is None
    assert advertisable(f"{mesh.me.mesh_ip}:51820", mesh) is None  # the control URL reached over the mesh
    assert advertisable("169.254.3.4:51820", mesh) is None and advertisable("[fe80::1]:51820", mesh) is None
