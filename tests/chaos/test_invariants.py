"""The chaos invariants: silent on a healthy mesh, and each one flags its own breakage by name."""
from __future__ import annotations

from testbed.chaos.invariants import Checker, HostView, Member, Snapshot
from testbed.chaos.schedule import Fault

THRESHOLD = 6.0
KEYS = {name: f"{name}-key=" for name in ("a", "b", "c", "d")}
IPS = {"a": "100.64.0.1", "b": "100.64.0.2", "c": "100.64.0.3", "d": "100.64.0.4"}


def members(offline=(), gone=(), ips=None) -> tuple[Member, ...]:
    ips = {**IPS, **(ips or {})}
    return tuple(Member(f"id-{name}", name, KEYS[name], ips[name], name not in offline)
                 for name in KEYS if name not in gone)


def host(name: str, peers=None, revision=None) -> HostView:
    if peers is None:  # the converged view: every other node
        peers = {KEYS[other]: f"{IPS[other]}/32" for other in KEYS if other != name}
    return HostView(name, peers, frozenset(peers.values()), revision)


def healthy(t: float, **changes) -> Snapshot:
    hosts = {name: host(name) for name in KEYS}
    hosts.update(changes)
    return Snapshot(t, members(), tuple(hosts.values()), {("a", "b"): True, ("c", "d"): True})


def checker(faults=()) -> Checker:
    return Checker(list(faults), THRESHOLD, settle=3 * THRESHOLD)


def test_a_healthy_mesh_passes_every_check():
    check = checker()
    for t in range(30):
        assert check.observe(healthy(float(t))) == []
    assert {"identity", "safety", "no_ghost", "availability", "convergence"} <= set(check.checks)


def test_a_shared_or_changed_mesh_ip_is_an_identity_violation():
    check = checker()
    check.observe(healthy(0.0))
    found = check.observe(Snapshot(1.0, members(ips={"b": IPS["a"]}), ()))
    assert {v.invariant for v in found} == {"identity"}
    assert any("shared" in v.seen for v in found) and any("b (id-b) keeps 100.64.0.2" in v.expected for v in found)


def test_a_peer_planted_by_hand_is_a_safety_violation_on_its_second_sighting():
    check = checker()
    check.observe(healthy(0.0))
    planted = {**host("a").peers, "evil-key=": "100.64.0.9/32"}
    assert check.observe(healthy(1.0, a=host("a", planted))) == []  # it may be a registration not yet listed
    found = check.observe(healthy(2.0, a=host("a", planted)))
    assert [v.invariant for v in found if v.invariant == "safety"] == ["safety"]
    assert "evil-key=" in found[0].seen


def test_a_registered_key_at_another_nodes_ip_is_a_safety_violation():
    check = checker()
    check.observe(healthy(0.0))
    wrong = {**host("a").peers, KEYS["b"]: f"{IPS['c']}/32"}
    check.observe(healthy(1.0, a=host("a", wrong)))
    assert "safety" in {v.invariant for v in check.observe(healthy(2.0, a=host("a", wrong)))}


def test_an_offline_peer_kept_past_the_propagation_bound_is_a_ghost():
    fault = Fault(0.5, "power_off", "d", 30.0)
    check = checker([fault])
    check.observe(healthy(0.0))
    stale = Snapshot(8.0, members(offline=("d",)), tuple(host(n) for n in "abc"))
    assert check.observe(stale) == []  # just declared offline: the peers have `propagation` seconds
    found = check.observe(Snapshot(10.5, members(offline=("d",)), tuple(host(n) for n in "abc")))
    assert {v.invariant for v in found} == {"no_ghost"} and len(found) == 3
    assert "d offline" in found[0].expected
    assert check.margins["no_ghost"] == 2.0  # the smallest slack a passing check had


def test_a_removed_node_kept_by_a_peer_is_a_ghost_too():
    check = checker([Fault(0.5, "leave", "d", 30.0)])
    check.observe(healthy(0.0))
    check.observe(Snapshot(1.0, members(gone=("d",)), (host("a"),)))
    found = check.observe(Snapshot(4.0, members(gone=("d",)), (host("a"),)))
    assert [v.invariant for v in found] == ["no_ghost"] and "removed" in found[0].expected


def test_a_node_no_fault_touched_declared_offline_is_a_false_offline_even_between_two_snapshots():
    check = checker([Fault(10.0, "agent_crash", "c", 3.0)])
    check.observe(healthy(0.0))
    found = check.observe(Snapshot(1.0, members(), (), offline_events=((0.6, "id-b"),)))  # back before the snapshot
    assert [v.invariant for v in found] == ["no_false_offline"] and "b declared offline" in found[0].seen
    assert found[0].t == 0.6
    assert check.observe(Snapshot(15.0, members(offline=("c",)), (), offline_events=((14.5, "id-c"),))) == []


def test_any_fault_of_the_control_plane_explains_an_offline():
    check = checker([Fault(10.0, "control_cut_all", "control", 15.0)])
    check.observe(healthy(0.0))
    assert check.observe(Snapshot(20.0, members(offline=("b",)), (), offline_events=((19.0, "id-b"),))) == []


def test_the_checker_counts_from_when_a_fault_really_ran():
    check = checker([Fault(10.0, "agent_crash", "c", 3.0)])
    check.observe(healthy(0.0))
    check.record(0, 30.0, 33.0)  # the runner was late: applied at 30 s
    assert check.observe(Snapshot(35.0, members(), (), offline_events=((35.0, "id-c"),))) == []
    late = check.observe(Snapshot(50.0, members(), (), offline_events=((50.0, "id-c"),)))
    assert [v.invariant for v in late] == ["no_false_offline"]


def test_a_host_a_fault_touched_is_not_judged_for_ghosts_until_a_threshold_after():
    check = checker([Fault(5.0, "agent_crash", "a", 4.0), Fault(0.5, "power_off", "d", 60.0)])
    check.observe(healthy(0.0))
    gone = members(offline=("d",))
    assert check.observe(Snapshot(8.0, gone, (host("a"),))) == []
    assert check.observe(Snapshot(12.0, gone, (host("a"),))) == []  # a's agent just restarted from its cache
    found = check.observe(Snapshot(9.0 + THRESHOLD + 2.5, gone, (host("a"),)))
    assert [v.invariant for v in found] == ["no_ghost"]


def test_a_revision_going_backward_is_a_monotonic_violation():
    check = checker()
    check.observe(healthy(0.0, a=host("a", revision=7)))
    found = check.observe(healthy(1.0, a=host("a", revision=5)))
    assert [v.invariant for v in found] == ["monotonic"]


def test_a_lost_ping_counts_only_between_nodes_no_fault_touches():
    check = checker([Fault(0.0, "power_off", "c", 20.0), Fault(0.0, "pair_cut", "a,b", 20.0)])
    lost = Snapshot(1.0, members(), tuple(host(n) for n in "ab"),
                    {("a", "b"): False, ("a", "c"): False, ("a", "d"): False})
    assert check.observe(lost) == []  # judged with the next snapshot
    found = check.observe(Snapshot(2.0, members(), ()))
    assert [(v.invariant, v.expected) for v in found] == [("availability", "a pings d (no fault touches the pair)")]
    assert found[0].t == 1.0


def test_a_lost_ping_to_a_node_offline_right_after_is_not_counted():
    check = checker()
    check.observe(Snapshot(1.0, members(), (), {("a", "d"): False}))
    assert check.observe(Snapshot(2.0, members(offline=("d",)), ())) == []


def test_convergence_is_judged_only_once_the_faults_have_settled():
    fault = Fault(0.0, "agent_crash", "a", 2.0)
    check = checker([fault])
    missing = host("a", {KEYS["b"]: f"{IPS['b']}/32"})
    assert not [v for v in check.observe(healthy(10.0, a=missing)) if v.invariant == "convergence"]
    found = [v for v in check.observe(healthy(2.0 + 3 * THRESHOLD, a=missing)) if v.invariant == "convergence"]
    assert len(found) == 1 and "missing peers" in found[0].seen and "c-key=" in found[0].seen


def test_a_short_agent_crash_keeps_its_pings_a_long_one_or_a_new_node_does_not():
    check = checker([Fault(0.0, "agent_crash", "a", 1.5), Fault(0.0, "agent_crash", "b", 9.0),
                     Fault(0.0, "join", "d", 0.0)])
    lost = Snapshot(1.0, members(), (), {("a", "c"): False, ("b", "c"): False, ("c", "d"): False})
    check.observe(lost)
    found = check.observe(Snapshot(2.0, members(), ()))
    assert [v.expected for v in found] == ["a pings c (no fault touches the pair)"]


def test_a_node_joining_while_the_control_plane_is_away_is_excused_until_a_threshold_after_it_is_back():
    check = checker([Fault(10.0, "control_cut_all", "control", 11.0), Fault(15.0, "join", "d", 0.0)])
    check.observe(Snapshot(24.0, members(), (), {("a", "d"): False}))  # the cut healed at 21: d enrols then
    assert check.observe(Snapshot(25.0, members(), ())) == []
    check.observe(Snapshot(28.0, members(), (), {("a", "d"): False}))
    assert [v.invariant for v in check.observe(Snapshot(29.0, members(), ()))] == ["availability"]
