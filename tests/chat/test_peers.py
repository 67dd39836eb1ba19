"""chat.peers: the view of the mesh chat builds from the agent's status."""
from chat import peers
from meshcommon.contract.wire import AgentStatus, PeerStatus


def peer(name: str, mesh_ip: str, online: bool = True) -> PeerStatus:
    return PeerStatus(node_id=f"id-{name}", name=name, mesh_ip=mesh_ip, public_key="k", endpoint=None, online=online,
                      configured=online, latest_handshake=None, latest_handshake_age=None, rx=0, tx=0)


def status(*entries: PeerStatus) -> AgentStatus:
    return AgentStatus(node_id="id-n1", name="n1", mesh_ip="100.64.0.1", public_key="k", interface="mesh0",
                       backend="wireguard-go", revision=3, applied_revision=3, control="unreachable",
                       control_url=None, unreachable_since=None, last_error=None, peers=list(entries), rejected=[])


def test_peers_are_keyed_by_mesh_ip_and_listed_by_name():
    view = peers.view_of(status(peer("n3", "100.64.0.3", online=False), peer("n2", "100.64.0.2")))
    assert view.peers["100.64.0.3"] == peers.Peer("n3", "100.64.0.3", online=False, configured=False)
    assert view.as_dict() == {"mesh_ip": "100.64.0.1", "name": "n1", "peers": [
        {"name": "n2", "mesh_ip": "100.64.0.2", "online": True, "configured": True},
        {"name": "n3", "mesh_ip": "100.64.0.3", "online": False, "configured": False}]}


def test_a_peer_without_a_mesh_ip_cannot_be_chatted_with_and_a_nameless_one_is_shown():
    view = peers.view_of(status(peer("n2", ""), peer("", "100.64.0.4")))
    assert list(view.peers) == ["100.64.0.4"] and view.peers["100.64.0.4"].name == "?"


def test_no_agent_is_no_view(tmp_path):
    with peers.reader(tmp_path) as agent:
        assert peers.read(agent) is None
