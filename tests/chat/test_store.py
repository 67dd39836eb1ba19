"""chat.store: message states, deduplicated resends, and nothing left `sending` after a restart."""
import pytest

from chat.store import Store

PEER, OTHER = "100.64.0.2", "100.64.0.3"


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "chat.db")


def test_an_outgoing_message_goes_from_sending_to_failed_with_a_reason_then_delivered(store):
    row = store.outgoing("m1aaaaaa", PEER, "hi")
    assert (row["direction"], row["state"], row["reason"]) == ("out", "sending", None)
    assert store.mark("m1aaaaaa", PEER, "failed", "peer offline")["reason"] == "peer offline"
    delivered = store.mark("m1aaaaaa", PEER, "delivered")
    assert (delivered["state"], delivered["reason"]) == ("delivered", None)
    assert store.get_outgoing("m1aaaaaa") == delivered


def test_a_resent_message_is_stored_once(store):
    row, new = store.incoming("m2bbbbbb", PEER, "yo")
    again, new_again = store.incoming("m2bbbbbb", PEER, "yo")
    assert new and not new_again and again == row and row["state"] == "received"
    assert [m["text"] for m in store.history(PEER)] == ["yo"]


def test_history_is_per_peer_in_arrival_order_both_directions(store):
    store.outgoing("m1aaaaaa", PEER, "hi")
    store.incoming("m2bbbbbb", PEER, "yo")
    store.incoming("m3cccccc", OTHER, "elsewhere")
    assert [(m["direction"], m["text"]) for m in store.history(PEER)] == [("out", "hi"), ("in", "yo")]
    assert store.get_outgoing("m2bbbbbb") is None  # incoming, not outgoing


def test_a_message_still_sending_at_a_restart_is_failed_and_kept(tmp_path, store):
    store.outgoing("m3cccccc", OTHER, "pending")
    store.outgoing("m4dddddd", OTHER, "done")
    store.mark("m4dddddd", OTHER, "delivered")
    restarted = Store(tmp_path / "chat.db")
    restarted.fail_unfinished()
    states = {m["text"]: (m["state"], m["reason"]) for m in restarted.history(OTHER)}
    assert states == {"pending": ("failed", "interrupted by a restart"), "done": ("delivered", None)}


def test_received_messages_are_kept_up_to_a_quota_per_peer_and_in_all(store, monkeypatch):
    from chat import store as stores
    monkeypatch.setattr(stores, "KEEP_PER_PEER", 5)
    monkeypatch.setattr(stores, "KEEP_IN_ALL", 8)
    for i in range(20):
        store.incoming(f"a{i:03d}", "100.64.0.2", f"from a {i}")
    store.outgoing("o1", "100.64.0.2", "mine")  # what this node sent is never pruned
    assert [m["text"] for m in store.history("100.64.0.2")] == [f"from a {i}" for i in range(15, 20)] + ["mine"]
    for i in range(6):
        store.incoming(f"b{i:03d}", "100.64.0.3", f"from b {i}")
    kept = store.history("100.64.0.2") + store.history("100.64.0.3")
    assert sum(m["direction"] == "in" for m in kept) == 8  # the oldest went first
    assert [m["text"] for m in store.history("100.64.0.3")] == [f"from b {i}" for i in range(1, 6)]
