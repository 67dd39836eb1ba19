"""The chaos schedule: replayable from its seed, and faults that combine only as allowed."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.chaos.schedule import KINDS, kinds_for, schedule

NODES = [f"node{i}" for i in range(1, 9)]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    kinds = kinds_for(ha=False)
    first = schedule(7, 600, NODES, 6.0, kinds)
    assert first == schedule(7, 600, NODES, 6.0, kinds)
    assert first != schedule(8, 600, NODES, 6.0, kinds)
    assert len(first) > 40
    assert [fault.t for fault in first] == sorted(fault.t for fault in first)


def test_a_long_run_draws_every_kind_and_none_that_needs_two_control_instances_without_them():
    drawn = {fault.kind for fault in schedule(1, 3600, NODES, 6.0, kinds_for(ha=False))}
    assert drawn == {name for name, kind in KINDS.items() if not kind.needs_ha}
    with_ha = schedule(1, 3600, NODES, 6.0, kinds_for(ha=True))
    assert {"pg_restart", "control_instance_lost"} <= {fault.kind for fault in with_ha}


def test_unknown_kinds_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown fault kinds: meteor"):
        kinds_for(ha=False, only=["agent_crash", "meteor"])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), nodes=st.integers(3, 12), max_live=st.integers(1, 4),
       duration=st.floats(60, 900))
def test_faults_combine_only_as_allowed(seed, nodes, max_live, duration):
    names = NODES[:nodes] if nodes <= len(NODES) else [f"n{i}" for i in range(nodes)]
    threshold = 6.0
    faults = schedule(seed, duration, names, threshold, kinds_for(ha=True), max_live=max_live)
    for fault in faults:
        live = [other for other in faults if other.t <= fault.t < other.until or other is fault]
        assert len(live) <= max_live
        held = [node for other in live for node in other.nodes]
        assert len(held) == len(set(held)), f"a node in two faults at once: {live}"
        assert len(held) <= len(names) - 2, "some pair always stays whole"
        assert sum(KINDS[other.kind].scope == "control" for other in live) <= 1
        assert fault.until <= duration - 3 * threshold + 1e-6, "healed before the run's settling time"
        low, high = KINDS[fault.kind].hold
        assert low * threshold - 1e-3 <= fault.hold <= high * threshold + 1e-6
        assert set(fault.nodes) <= set(names)
    joins = [fault.target for fault in faults if fault.kind == "join"]
    assert joins == [f"join{i}" for i in range(1, len(joins) + 1)]


def test_too_few_nodes_are_refused():
    with pytest.raises(ValueError, match="at least 3 nodes"):
        schedule(1, 600, ["a", "b"], 6.0, kinds_for(ha=False))
