"""Deltas are exact: from any retained revision, the agent folding the delta into its map gets the full map."""
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import to_builtins

from agent.core.intake import fold
from control.rules.netmap import Membership, NodeView, changed_since, delta
from meshcommon.contract.wire import DeltaNetmap, FullNetmap, decode_netmap_entries
from tests.control.netmap_oracle import full_map, netmap_for

ME = "me"
PREFIX = "100.64.0.0/10"
ops = st.lists(st.tuples(st.sampled_from(["upsert", "offline", "online", "delete"]),
                         st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                         st.integers(min_value=1, max_value=3)), min_size=1, max_size=40)


def view(node_id: str, version: int = 0, online: bool = True) -> NodeView:
    return NodeView(node_id, f"{node_id}-{version}", f"100.64.0.{ord(node_id[0]) % 250}",
                    "A" * 43 + "=", f"10.0.0.1:{51820 + version}", 51820, online)


def history(operations):
    """Replay operations as the registry would: one revision per effective change."""
    nodes = {ME: view(ME)}
    changes, snapshots, revision = [], [Membership(0, dict(nodes))], 0
    for op, node_id, version in operations:
        before = nodes.get(node_id)
        if op == "upsert":
            nodes[node_id] = view(node_id, version, True)
        elif op in ("offline", "online") and before is not None:
            nodes[node_id] = view(node_id, int(before.name.split("-")[1]), op == "online")
        elif op == "delete":
            nodes.pop(node_id, None)
        if nodes.get(node_id) == before:
            continue  # no effective change: no revision
        revision += 1
        changes.append((revision, node_id))
        snapshots.append(Membership(revision, dict(nodes), list(changes)))
    return snapshots


def as_received(answer: FullNetmap | DeltaNetmap):
    """The answer as the agent receives it: JSON, decoded with its peer entries left raw."""
    return decode_netmap_entries(msgspec.json.encode(answer))


def decoded(entries: dict[str, msgspec.Raw]) -> dict[str, dict]:
    return {node_id: msgspec.json.decode(entry) for node_id, entry in entries.items()}


@settings(max_examples=300)
@given(ops, st.data())
def test_delta_from_any_earlier_revision_yields_the_full_map(operations, data):
    snapshots = history(operations)
    current = snapshots[-1]
    expected = to_builtins(full_map(current, ME, PREFIX))["peers"]
    for old in snapshots:
        known = fold({}, as_received(full_map(old, ME, PREFIX)))
        answer = as_received(netmap_for(current, ME, PREFIX, since=old.revision))
        assert decoded(fold(known, answer)) == {p["node_id"]: p for p in expected}


@given(ops)
def test_horizon_forces_a_full_map(operations):
    snapshots = history(operations)
    current = snapshots[-1]
    trimmed = Membership(current.revision, current.nodes, [c for c in current.changes if c[0] > 2], horizon=2)
    assert delta(trimmed, 1) is None
    assert netmap_for(trimmed, ME, PREFIX, since=1).delta is False


def test_delta_lists_each_changed_node_once():
    changes = [(1, "a"), (2, "b"), (3, "a"), (4, "c")]
    assert changed_since(changes, 1) == ["b", "a", "c"]
    assert changed_since(changes, 4) == []


def test_delta_never_lists_the_asking_node_as_its_own_peer():
    current = Membership(2, {ME: view(ME, 1), "a": view("a")}, [(1, "a"), (2, ME)])
    answer = netmap_for(current, ME, PREFIX, since=0)
    assert answer.delta and [p.node_id for p in answer.upserted] == ["a"]
    assert answer.self.name == "me-1"


def test_future_revision_gets_a_full_map():
    current = Membership(2, {ME: view(ME)}, [(1, ME), (2, ME)])
    assert netmap_for(current, ME, PREFIX, since=7).delta is False
