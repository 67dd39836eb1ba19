"""The membership cache: loads applied in order, removed nodes forgotten with their tokens (no store)."""
from control.membership import MembershipCache
from control.records import Loaded
from meshcommon.wire import NodeView


def view(node_id: str, online: bool = True) -> NodeView:
    return NodeView(node_id, node_id, "100.64.0.1", "A" * 43 + "=", None, 51820, online)


def test_a_full_load_then_a_partial_one_with_a_removal():
    cache = MembershipCache("100.64.0.0/24")
    assert cache.apply(Loaded(2, 0, [(1, "a"), (2, "b")], {"a": (view("a"), "ha"), "b": (view("b"), "hb")}, True))
    assert (cache.node_for("ha"), cache.is_online("b")) == ("a", True)
    assert cache.apply(Loaded(4, 0, [(3, "a"), (4, "b")], {"b": (view("b", online=False), "hb")}, False))
    assert cache.node_for("ha") is None and "a" not in cache.nodes and not cache.is_online("b")
    assert cache.changes == [(1, "a"), (2, "b"), (3, "a"), (4, "b")]


def test_an_older_partial_load_changes_nothing():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(5, 0, [(5, "a")], {"a": (view("a"), "ha")}, True))
    assert not cache.apply(Loaded(4, 0, [(4, "a")], {}, False))
    assert cache.revision == 5 and cache.node_for("ha") == "a"


def test_the_change_log_is_trimmed_to_the_horizon():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(6, 4, [(3, "a"), (5, "a"), (6, "a")], {"a": (view("a"), "ha")}, True))
    assert cache.changes == [(5, "a"), (6, "a")]
