"""The store's named queries, one table at a time, on SQLite and PostgreSQL."""
import pytest

from control.rules.records import HeartbeatReport, JoinTokenRecord, NodeRecord, TunnelDown
from control.store import challenges, changes, db, join_tokens, mesh_state, nodes


def node(node_id: str = "n1", mesh_ip: str = "100.64.0.1", **extra) -> NodeRecord:
    fields = {"id": node_id, "name": node_id, "public_key": f"{node_id:A<43}=", "mesh_ip": mesh_ip,
              "endpoint": None, "listen_port": 51820, "token_hash": f"{node_id:0<64}", "created_at": 1.0,
              "last_seen": 1.0, "online": True, "applied_revision": None, "changed_revision": 1}
    return NodeRecord(**{**fields, **extra})


def token(token_id: str = "t1", **extra) -> JoinTokenRecord:
    fields = {"id": token_id, "reusable": False, "description": "", "created_at": 1.0, "expires_at": None,
              "revoked_at": None, "uses": 0}
    return JoinTokenRecord(**{**fields, **extra})


def add(token_: JoinTokenRecord) -> None:
    join_tokens.add(token_, f"{token_.id:0<64}")


def test_a_bump_advances_the_revision_once_and_logs_the_changed_nodes(store):
    assert db.retrying(lambda: mesh_state.bump(["a", "b"])) == 1
    assert db.retrying(lambda: mesh_state.bump(["a"])) == 2
    assert mesh_state.revision() == 2 and mesh_state.read().horizon == 0
    assert changes.between(None, 2) == [(1, "a"), (1, "b"), (2, "a")]
    assert changes.between(1, 2) == [(2, "a")]


def test_the_change_log_is_pruned_to_the_last_revisions_kept(store, monkeypatch):
    monkeypatch.setattr(mesh_state, "CHANGE_LOG_KEEP", 3)
    monkeypatch.setattr(mesh_state, "PRUNE_EVERY", 5)
    for _ in range(5):
        db.retrying(lambda: mesh_state.bump(["a"]))
    assert mesh_state.read().horizon == 2
    assert changes.between(None, 5) == [(3, "a"), (4, "a"), (5, "a")]


def test_the_state_row_keeps_the_last_ip_and_the_sweep(store):
    db.retrying(lambda: mesh_state.set_last_ip("100.64.0.7"))
    db.retrying(lambda: mesh_state.record_sweep(10.0, 16.0))
    locked = db.retrying(mesh_state.lock)
    assert (locked.last_ip, locked.last_sweep_at, locked.grace_until) == ("100.64.0.7", 10.0, 16.0)


def test_nodes_are_read_back_as_written_with_the_tunnels_they_report_down(store):
    nodes.add(node("n1", reflexive_endpoint="198.51.100.7:51820"))
    nodes.add(node("n2", "100.64.0.2", online=False))
    down = (TunnelDown("n2", 1.5, "no_traffic"), TunnelDown("n3", 2.0, "no_handshake"))
    nodes.record_heartbeats({"n1": HeartbeatReport(seen=5.0, applied_revision=4, tunnels_down=down)})
    read = nodes.get("n1")
    assert read == node("n1", last_seen=5.0, applied_revision=4, tunnels_down=down,
                        reflexive_endpoint="198.51.100.7:51820")
    assert nodes.reflexive_endpoints(["n1", "n2", "nope"]) == {"n1": "198.51.100.7:51820", "n2": None}
    assert nodes.liveness(["n1", "n2", "nope"]) == {"n1": (True, "198.51.100.7:51820"), "n2": (False, None)}
    assert nodes.by_token_hash(read.token_hash) == read and nodes.get("nope") is None
    assert nodes.key_taken(read.public_key) and not nodes.key_taken("B" * 43 + "=")
    assert nodes.ip_taken("100.64.0.2") and sorted(nodes.mesh_ips()) == ["100.64.0.1", "100.64.0.2"]
    assert nodes.offline_among(["n1", "n2"]) == ["n2"]
    assert nodes.online_silent_since(6.0) == {"n1": 5.0}
    view, token_hash = nodes.views(["n2"])["n2"]
    assert (view.node_id, view.online, token_hash) == ("n2", False, node("n2").token_hash)
    nodes.record_heartbeats({"n1": HeartbeatReport(seen=6.0, applied_revision=5)})  # no report: unchanged
    assert nodes.get("n1").tunnels_down == down
    nodes.set_reflexive("n1", None, revision=9)
    assert (nodes.get("n1").reflexive_endpoint, nodes.get("n1").changed_revision) == (None, 9)


def test_heartbeats_of_many_nodes_are_stored_in_few_statements_each_node_its_own(store, monkeypatch):
    monkeypatch.setattr(nodes, "HEARTBEAT_ROWS", 3)  # several statements, the last one short
    for i in range(8):
        nodes.add(node(f"n{i}", f"100.64.0.{i + 1}"))
    down = (TunnelDown("n7", 1.5, "no_traffic"),)
    batch = {f"n{i}": HeartbeatReport(seen=10.0 + i / 3, applied_revision=None if i % 2 else 2**40 + i,
                                      tunnels_down=down if i == 2 else None) for i in range(7)}
    batch["ghost"] = HeartbeatReport(seen=99.0, applied_revision=1)  # removed meanwhile: nothing to update
    db.retrying(lambda: nodes.record_heartbeats(batch))
    for i in range(7):
        stored = nodes.get(f"n{i}")
        assert (stored.last_seen, stored.applied_revision) == (10.0 + i / 3, None if i % 2 else 2**40 + i)
        assert stored.tunnels_down == (down if i == 2 else ())
    assert nodes.get("n7") == node("n7", "100.64.0.8")  # not in the batch: untouched
    assert len(nodes.liveness([f"n{i}" for i in range(8)] + ["ghost"])) == 8  # in chunks too
    assert nodes.get("ghost") is None
    db.retrying(lambda: nodes.record_heartbeats({"n1": HeartbeatReport(seen=20.0, applied_revision=None)}))
    assert nodes.get("n1").last_seen == 20.0  # a batch of NULLs only (typed as text on PostgreSQL)


def test_node_liveness_and_removal(store):
    nodes.add(node("n1"))
    nodes.set_online(["n1"], False, revision=7)
    assert (nodes.get("n1").online, nodes.get("n1").changed_revision) == (False, 7)
    nodes.update_registration("n1", {"name": "renamed"}, seen=9.0, revision=8)
    assert nodes.get("n1") == node("n1", name="renamed", last_seen=9.0, changed_revision=8)
    assert nodes.delete("n1") and not nodes.delete("n1") and nodes.every() == []


@pytest.mark.parametrize("reusable, uses", [(False, [True, False]), (True, [True, True])])
def test_a_single_use_token_is_used_once(store, reusable, uses):
    add(token(reusable=reusable))
    assert [join_tokens.use("t1"), join_tokens.use("t1")] == uses
    assert join_tokens.get("t1").uses == uses.count(True)


def test_join_tokens_are_found_by_hash_listed_oldest_first_and_revoked(store):
    add(token("t2", created_at=2.0))
    add(token("t1", created_at=1.0))
    assert [t.id for t in join_tokens.every()] == ["t1", "t2"]
    assert join_tokens.by_hash(f"{'t2':0<64}") == token("t2", created_at=2.0)
    join_tokens.revoke("t2", now=3.0)
    assert join_tokens.get("t2").revoked_at == 3.0


def test_a_nonce_is_redeemed_once_by_its_token_before_it_expires(store):
    challenges.add("nonce", "token", expires_at=10.0)
    challenges.add("late", "token", expires_at=10.0)
    assert challenges.outstanding("token") == 2
    assert not challenges.redeem("nonce", "other token", now=5.0)
    assert challenges.redeem("nonce", "token", now=5.0) and not challenges.redeem("nonce", "token", now=5.0)
    assert not challenges.redeem("late", "token", now=10.0)
    challenges.purge_expired(now=10.0)
    assert challenges.outstanding("token") == 0


def test_the_first_control_key_stays(store):
    assert challenges.control_key("first", now=1.0) == "first"
    assert challenges.control_key("second", now=2.0) == "first"
