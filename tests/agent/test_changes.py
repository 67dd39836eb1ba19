"""Changes: what a pass did, as typed events, from the plan, the steps reached and the netmap."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.changes import CHANGE_KINDS, STEP_CHANGES, Change, changes, update_reason
from agent.core.desired import desired_state
from agent.core.model import Applied, Failure, Plan, Step, StepKind, WgPeer
from tests.agent.data import entry, key, netmap

NETMAP = netmap({"a": entry("a", "100.64.0.2"), "b": entry("b", "100.64.0.3", online=False)}, revision=12)
A, = desired_state(NETMAP, "mesh0", 51820).peers
B_KEY = NETMAP.peers[1].public_key
ADDED = Step(StepKind.PEER_ADDED, A.public_key)
PEER_STEPS = {StepKind.PEER_ADDED, StepKind.PEER_REMOVED, StepKind.PEER_UPDATED}


def wg_peer(public_key: str, endpoint: str | None = "192.0.2.1:51820", ips=("100.64.0.9/32",), keepalive=25):
    return WgPeer(public_key, ips, endpoint, keepalive)


def test_nothing_done_is_no_change():
    assert changes(Plan(), Applied(), NETMAP) == []


def test_peer_changes_wait_for_wireguard_to_take_the_config():
    plan = Plan(peers_added=(A,))
    assert changes(plan, Applied(done=(Step(StepKind.LINK_UP, "mesh0"),)), NETMAP) == []
    assert [c.kind for c in changes(plan, Applied(done=(ADDED,)), NETMAP)] == [StepKind.PEER_ADDED]


def test_an_added_peer_says_who_with_what():
    [added] = changes(Plan(peers_added=(A,)), Applied(done=(ADDED,)), NETMAP)
    assert added == Change(StepKind.PEER_ADDED, "me", "online", 12, "a", A.public_key,
                           allowed_ips=("100.64.0.2/32",), endpoint="10.9.0.2:51820")
    assert added.fields() == {"node": "me", "peer": "a", "public_key": A.public_key, "allowed_ips": ["100.64.0.2/32"],
                              "endpoint": "10.9.0.2:51820", "reason": "online", "revision": 12}


def test_a_removed_peer_went_offline_if_the_netmap_still_has_it_else_it_was_deleted():
    gone = key()
    plan = Plan(peers_removed=(wg_peer(B_KEY), wg_peer(gone)))
    offline, deleted = changes(plan, Applied(done=(Step(StepKind.PEER_REMOVED, B_KEY),
                                                   Step(StepKind.PEER_REMOVED, gone))), NETMAP)
    assert (offline.kind, offline.peer, offline.reason) == (StepKind.PEER_REMOVED, "b", "offline")
    assert (deleted.kind, deleted.peer, deleted.reason) == (StepKind.PEER_REMOVED, None, "deleted")
    assert deleted.fields() == {"node": "me", "peer": None, "public_key": gone, "reason": "deleted", "revision": 12}


@pytest.mark.parametrize("observed, reason", [
    (wg_peer(A.public_key, "192.0.2.7:51820", A.allowed_ips), "endpoint"),
    (wg_peer(A.public_key, A.endpoint, ("100.64.0.3/32",)), "allowed_ips"),
    (wg_peer(A.public_key, A.endpoint, A.allowed_ips, keepalive=0), "keepalive"),
    (wg_peer(A.public_key, "192.0.2.7:51820", ("100.64.0.3/32",)), "endpoint"),
])
def test_an_updated_peer_says_what_differed(observed, reason):
    assert update_reason(observed, A) == reason
    done = (Step(StepKind.PEER_UPDATED, A.public_key),)
    [updated] = changes(Plan(peers_updated=((observed, A),)), Applied(done=done), NETMAP)
    assert (updated.kind, updated.peer, updated.reason) == (StepKind.PEER_UPDATED, "a", reason)
    assert updated.fields() == {"node": "me", "peer": "a", "public_key": A.public_key, "reason": reason,
                                "revision": 12}


def test_a_hostname_endpoint_is_never_the_reason():
    named = WgPeer(A.public_key, A.allowed_ips, "peer.example:51820", 25)
    assert update_reason(wg_peer(A.public_key, "192.0.2.7:51820", ("100.64.0.3/32",)), named) == "allowed_ips"


def test_peers_written_one_by_one_are_reported_one_by_one_and_only_those_that_took():
    gone, moved = key(), wg_peer(A.public_key, "192.0.2.7:51820", A.allowed_ips)
    plan = Plan(peers_added=(A,), peers_removed=(wg_peer(B_KEY), wg_peer(gone)), peers_updated=((moved, A),))
    done = (Step(StepKind.DEVICE_SET, "mesh0"), Step(StepKind.PEER_REMOVED, gone),
            Step(StepKind.PEER_UPDATED, A.public_key))
    failed = (Failure(Step(StepKind.PEER_REMOVED, B_KEY), "UAPI set: errno=-5 (Input/output error)"),)
    found = changes(plan, Applied(done, failed), NETMAP)
    assert [(c.kind, c.public_key, c.reason) for c in found] == [
        (StepKind.PEER_REMOVED, gone, "deleted"), (StepKind.PEER_UPDATED, A.public_key, "endpoint"),
        (StepKind.APPLY_ERROR, None, "UAPI set: errno=-5 (Input/output error)")]
    assert found[-1].fields()["step"] == "peer_removed" and found[-1].target == B_KEY


@pytest.mark.parametrize("kind", [k for k in StepKind if k not in PEER_STEPS])
def test_each_step_is_reported_by_its_own_change_or_not_at_all(kind):
    found = changes(Plan(), Applied(done=(Step(kind, "100.64.0.2/32"),)), NETMAP)
    if kind in STEP_CHANGES:
        assert found == [Change(kind, "me", "reconcile", 12, target="100.64.0.2/32")]
        assert found[0].fields() == {"node": "me", "target": "100.64.0.2/32", "reason": "reconcile", "revision": 12}
        assert found[0].kind.value == kind.value
    else:
        assert found == []  # the link coming up and WireGuard syncing show as the peers' changes


def test_each_failure_is_an_apply_error_naming_the_step():
    failed = Failure(Step(StepKind.ROUTE_ADDED, "100.64.0.2/32"), "(1, 'Operation not permitted')")
    [error] = changes(Plan(add_routes=frozenset({"100.64.0.2/32"})), Applied(failed=(failed,)), NETMAP)
    assert error.kind is StepKind.APPLY_ERROR
    assert error.fields() == {"node": "me", "step": "route_added", "target": "100.64.0.2/32",
                              "reason": "(1, 'Operation not permitted')", "revision": 12}


def test_changes_come_in_the_order_the_steps_were_reached_then_the_failures():
    plan = Plan(create_interface=True, peers_added=(A,), add_routes=frozenset({"100.64.0.2/32"}))
    done = (Step(StepKind.INTERFACE_CREATED, "mesh0"), Step(StepKind.ADDRESS_ADDED, "100.64.0.1/32"),
            Step(StepKind.LINK_UP, "mesh0"), ADDED, Step(StepKind.ROUTE_ADDED, "100.64.0.2/32"))
    failed = (Failure(Step(StepKind.ADDRESS_REMOVED, "100.64.0.9/32"), "busy"),)
    assert [c.kind for c in changes(plan, Applied(done, failed), NETMAP)] == [
        StepKind.INTERFACE_CREATED, StepKind.ADDRESS_ADDED, StepKind.PEER_ADDED, StepKind.ROUTE_ADDED,
        StepKind.APPLY_ERROR]


keys_pool = [key() for _ in range(6)]
peers = st.builds(wg_peer, st.sampled_from(keys_pool), st.sampled_from([None, "192.0.2.1:51820", "192.0.2.2:1"]))
steps = st.builds(Step, st.sampled_from([k for k in StepKind if k not in PEER_STEPS]),
                  st.sampled_from(["mesh0", "100.64.0.2/32"]))


@given(st.lists(peers, max_size=6, unique_by=lambda p: p.public_key), st.data(), st.lists(steps, max_size=8),
       st.lists(st.builds(Failure, steps, st.text(max_size=5)), max_size=3))
def test_every_change_is_accounted_for(pool, data, done, failed):
    """Each peer is added, removed or updated at most once in a plan (diff matches by public key)."""
    cut = sorted(data.draw(st.lists(st.integers(0, len(pool)), min_size=2, max_size=2)))
    added, removed = pool[:cut[0]], pool[cut[0]:cut[1]]
    updated = [(peer, wg_peer(peer.public_key, "192.0.2.9:1")) for peer in pool[cut[1]:]]
    plan = Plan(peers_added=tuple(added), peers_removed=tuple(removed), peers_updated=tuple(updated))
    peer_steps = ([Step(StepKind.PEER_ADDED, p.public_key) for p in added]
                  + [Step(StepKind.PEER_REMOVED, p.public_key) for p in removed]
                  + [Step(StepKind.PEER_UPDATED, new.public_key) for _, new in updated])
    reached = [step for step in peer_steps if data.draw(st.booleans())]  # WireGuard took these peers
    found = changes(plan, Applied(tuple(done + reached), tuple(failed)), NETMAP)
    count = {kind: sum(c.kind is kind for c in found) for kind in CHANGE_KINDS}
    for kind in PEER_STEPS:  # each peer reported once WireGuard took it, and only then
        assert count[kind] == sum(step.kind is kind for step in reached)
    for kind in STEP_CHANGES:
        assert count[kind] == sum(step.kind is kind for step in done)
    assert [(c.step, c.target, c.reason) for c in found if c.kind is StepKind.APPLY_ERROR] == [
        (f.step.kind, f.step.target, f.reason) for f in failed]
    assert all(c.node == "me" and c.revision == 12 for c in found)
    for change in found:
        fields = change.fields()
        assert {"node", "reason", "revision"} <= set(fields) and None not in (fields["node"], fields["reason"])
        if change.kind is StepKind.PEER_REMOVED:
            assert change.reason == ("offline" if change.public_key in {p.public_key for p in NETMAP.peers}
                                     else "deleted")
