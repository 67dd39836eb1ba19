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
