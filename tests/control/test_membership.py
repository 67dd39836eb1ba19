"""The membership cache: loads applied in order, removed nodes forgotten with their tokens (no store)."""
import msgspec

from control.live import membership
from control.live.membership import MembershipCache
from control.rules.records import Loaded
from meshcommon.contract.wire import NodeView
from tests.control.netmap_oracle import netmap_for


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


def test_every_answer_is_the_pure_netmap_and_a_delta_byte_for_byte_whether_it_names_the_node_or_not():
    cache = MembershipCache("100.64.0.0/24")
    nodes = {n: (view(n), f"h{n}") for n in "abcdefghij"}
    cache.apply(Loaded(10, 0, [(i + 1, n) for i, n in enumerate(nodes)], nodes, True))
    # Revision 11: b changes and c leaves; 12: k joins; 13: a goes offline.
    cache.apply(Loaded(11, 0, [(11, "b"), (11, "c")], {"b": (view("b", online=False), "hb")}, False))
    cache.apply(Loaded(12, 0, [(12, "k")], {"k": (view("k"), "hk")}, False))
    cache.apply(Loaded(13, 0, [(13, "a")], {"a": (view("a", online=False), "ha")}, False))
    for since in (None, 0, 5, 9, 10, 11, 12):
        for me in cache.nodes:
            kind, blob = cache.answer(me, since)
            expected = netmap_for(cache.snapshot(), me, cache.prefix, since)
            assert kind == ("delta" if expected.delta else "full")
            if expected.delta:
                assert blob == msgspec.json.encode(expected), (me, since)
            else:  # spliced in another order of fields
                assert msgspec.json.decode(blob) == msgspec.to_builtins(expected), (me, since)
            assert cache.answer(me, since) == (kind, blob)  # and again, from what is shared now


def test_what_is_shared_per_since_is_bounded_and_dropped_at_the_next_revision(monkeypatch):
    monkeypatch.setattr(membership, "MAX_SHARED_DELTAS", 3)
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(Loaded(20, 0, [(i + 1, f"n{i}") for i in range(20)],
                       {f"n{i}": (view(f"n{i}"), f"h{i}") for i in range(20)}, True))
    for since in range(10, 20):
        cache.answer("n0", since)
    assert len(cache._deltas) == 3 and set(cache._spliced) <= set(cache._deltas)
    cache.apply(Loaded(21, 0, [(21, "n1")], {"n1": (view("n1", online=False), "h1")}, False))
    assert cache._deltas == {} and cache._spliced == {}
