from control.rules.liveness import decide_sweep

SEEN = {"a": 100.0, "b": 95.0}


def test_silent_nodes_go_offline_after_the_threshold():
    decision = decide_sweep(now=102.0, last_sweep_at=101.5, grace_until=0, online_last_seen=SEEN,
                            offline_after=6.0, gap_limit=2.0)
    assert decision.offline == ("b",)
    assert not decision.grace_started


def test_exactly_at_the_threshold_is_still_online():
    decision = decide_sweep(now=101.0, last_sweep_at=100.5, grace_until=0, online_last_seen=SEEN,
                            offline_after=6.0, gap_limit=2.0)
    assert decision.offline == ()


def test_a_pause_in_sweeping_grants_grace_instead_of_mass_offline():
    decision = decide_sweep(now=200.0, last_sweep_at=150.0, grace_until=0, online_last_seen=SEEN,
                            offline_after=6.0, gap_limit=2.0)
    assert decision.offline == ()
    assert decision.grace_started and decision.grace_until == 206.0


def test_after_grace_silent_nodes_go_offline():
    decision = decide_sweep(now=206.5, last_sweep_at=206.0, grace_until=206.0, online_last_seen=SEEN,
                            offline_after=6.0, gap_limit=2.0)
    assert decision.offline == ("a", "b")


def test_first_sweep_ever_grants_grace():
    decision = decide_sweep(now=200.0, last_sweep_at=None, grace_until=0, online_last_seen=SEEN,
                            offline_after=6.0, gap_limit=2.0)
    assert decision.offline == () and decision.grace_until == 206.0


MANY = {f"n{i}": 100.0 for i in range(6)}  # six nodes that fell silent together at 100.0


def test_most_nodes_falling_silent_together_are_held_online_for_the_hold_more():
    decision = decide_sweep(now=106.5, last_sweep_at=106.0, grace_until=0, online_last_seen=MANY,
                            offline_after=6.0, gap_limit=2.0, online=10, hold=60.0)
    assert decision.offline == () and decision.disruption
    assert decide_sweep(now=166.0, last_sweep_at=165.5, grace_until=0, online_last_seen=MANY, offline_after=6.0,
                        gap_limit=2.0, online=10, hold=60.0).offline == ()
    after = decide_sweep(now=166.5, last_sweep_at=166.0, grace_until=0, online_last_seen={**MANY, "n0": 160.0},
                         offline_after=6.0, gap_limit=2.0, online=10, hold=60.0)
    assert after.offline == ("n1", "n2", "n3", "n4", "n5"), "silent past the hold: offline; n0 beat since"


def test_a_few_nodes_or_a_minority_falling_silent_are_just_nodes_failing():
    two = {"a": 100.0, "b": 100.0}
    assert decide_sweep(now=106.5, last_sweep_at=106.0, grace_until=0, online_last_seen=two, offline_after=6.0,
                        gap_limit=2.0, online=2, hold=60.0).offline == ("a", "b")
    assert decide_sweep(now=106.5, last_sweep_at=106.0, grace_until=0, online_last_seen=MANY, offline_after=6.0,
                        gap_limit=2.0, online=13, hold=60.0).offline == tuple(sorted(MANY))
    assert decide_sweep(now=106.5, last_sweep_at=106.0, grace_until=0, online_last_seen=MANY, offline_after=6.0,
                        gap_limit=2.0, online=12, hold=60.0).disruption  # exactly half: held
