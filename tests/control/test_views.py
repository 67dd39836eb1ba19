"""Answer shapes (pure): what each answer says and that it encodes as the API has always answered."""
import msgspec

from control.api import views
from control.rules import ipam
from control.rules.records import Enrolled, JoinTokenRecord, JoinTokenStatus, NodeRecord, RegistrySettings, TunnelDown

SETTINGS = RegistrySettings(ipam.parse_prefix("100.64.0.0/10"), heartbeat_interval=2.0, offline_after=6.0)


def node(node_id: str = "n1", mesh_ip: str = "100.64.0.1", **extra) -> NodeRecord:
    fields = {"id": node_id, "name": "alpha", "public_key": "A" * 43 + "=", "mesh_ip": mesh_ip,
              "endpoint": "192.0.2.1:51820", "listen_port": 51820, "token_hash": "0" * 64, "created_at": 1.0,
              "last_seen": 2.0, "online": True, "applied_revision": 3, "changed_revision": 4,
              "reflexive_endpoint": "198.51.100.7:51820", "tunnels_down": (TunnelDown("n2", 1.5, "no_traffic"),)}
    return NodeRecord(**{**fields, **extra})


def encoded(answer) -> bytes:
    return msgspec.json.encode(answer)


def test_a_node_detail_is_its_view_then_its_liveness_in_that_order():
    assert encoded(views.node_detail(node())) == encoded({
        "node_id": "n1", "name": "alpha", "mesh_ip": "100.64.0.1", "public_key": "A" * 43 + "=",
        "endpoint": "192.0.2.1:51820", "listen_port": 51820, "online": True,
        "reflexive_endpoint": "198.51.100.7:51820", "created_at": 1.0, "last_seen": 2.0,
        "applied_revision": 3, "changed_revision": 4,
        "tunnels_down": [{"node_id": "n2", "since": 1.5, "reason": "no_traffic"}], "agent_version": None})


def test_nodes_are_listed_by_mesh_ip_as_numbers():
    listed = views.nodes(9, [node("c", "100.64.0.10"), node("a", "100.64.0.9"), node("b", "100.64.1.0")])
    assert listed.revision == 9 and [n.node_id for n in listed.nodes] == ["a", "c", "b"]


def test_a_registration_answer_carries_the_mesh_settings():
    answer = views.registered(Enrolled(node(), "mvn_secret", 7), SETTINGS)
    assert encoded(answer) == encoded({"node_id": "n1", "name": "alpha", "mesh_ip": "100.64.0.1",
                                       "mesh_prefix": "100.64.0.0/10", "node_token": "mvn_secret",
                                       "heartbeat_interval": 2.0, "offline_after": 6.0, "revision": 7})
    beat = b'{"revision":7,"heartbeat_interval":2.0,"offline_after":6.0}'
    assert encoded(views.heartbeat_answer(7, SETTINGS)) == beat


def test_join_token_answers_never_carry_the_secret_but_once():
    status = JoinTokenStatus(JoinTokenRecord("t1", False, "ci", 1.0, None, None, 0), "active")
    shown = {"id": "t1", "reusable": False, "description": "ci", "created_at": 1.0, "expires_at": None,
             "revoked_at": None, "uses": 0, "state": "active"}
    assert encoded(views.join_token(status)) == encoded(shown)
    assert encoded(views.join_token_created(status, "mvj_secret")) == encoded({**shown, "token": "mvj_secret"})
    assert encoded(views.join_tokens([status])) == encoded({"join_tokens": [shown]})


def test_small_answers():
    assert encoded(views.deleted("n1", 5)) == b'{"deleted":"n1","revision":5}'
    assert encoded(views.health(5, 4)) == b'{"status":"ok","revision":5,"loaded_revision":4}'
