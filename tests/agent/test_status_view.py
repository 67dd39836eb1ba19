"""Status view: one AgentStatus whether the agent runs or not, with where each peer's endpoint came from."""
import msgspec

from agent.apply import Writes
from agent.core.model import ControlStatus, PeerStats
from agent.core.status_view import agent_status, handshake_age
from meshcommon.contract.wire import AgentStatus, RejectedPeer, WriteCounts
from tests.agent.data import entry, identity, key, netmap

NETMAP = netmap({"a": entry("a", "100.64.0.2"), "b": entry("b", "100.64.0.3", online=False), "bad": "junk"},
                revision=8)
A, B = NETMAP.peers
IDENTITY = identity()
NOW = 1000.0

STATS = (PeerStats(A.public_key, "10.9.0.2:51820", 990, 5, 7), PeerStats(key(), None, 0, 0, 0))


def test_handshake_age():
    assert handshake_age(None, NOW) is None and handshake_age(STATS[1], NOW) is None
    assert handshake_age(PeerStats("k", None, 995, 0, 0), 1000.26) == 5.3


def test_the_live_status():
    status = agent_status(name="alpha", interface="mesh7", identity=IDENTITY, netmap=NETMAP, stats=STATS, now=NOW,
                          control=ControlStatus(True, "http://c"), public_key="PUB", backend="kernel",
                          applied_revision=8, writes=Writes(wireguard=4, netlink=6))
    assert (status.node_id, status.name, status.mesh_ip, status.interface, status.backend) == (
        "me", "alpha", "100.64.0.1", "mesh7", "kernel")
    assert (status.revision, status.applied_revision, status.control, status.control_url) == (8, 8, "connected",
                                                                                             "http://c")
    a, b = status.peers
    assert (a.name, a.configured, a.latest_handshake, a.latest_handshake_age, a.rx, a.tx) == ("a", True, 990, 10.0,
                                                                                             5, 7)
    assert (b.name, b.online, b.configured, b.latest_handshake, b.rx) == ("b", False, False, None, 0)
    assert (a.endpoint, a.current_endpoint, a.endpoint_source) == ("10.9.0.2:51820", "10.9.0.2:51820", "advertised")
    assert (b.current_endpoint, b.endpoint_source) == (None, None)
    assert status.rejected[0].node_id == "bad" and isinstance(status.rejected[0], RejectedPeer)
    assert status.writes == WriteCounts(wireguard=4, netlink=6)
    assert msgspec.json.decode(msgspec.json.encode(status), type=AgentStatus) == status  # fits the contract


def test_an_unreachable_control_plane_is_said_with_since_when_and_why():
    status = agent_status(name="alpha", interface="mesh0", identity=IDENTITY, netmap=NETMAP, stats=(), now=NOW,
                          control=ControlStatus(False, "http://c", 900.0, "refused"))
    assert (status.control, status.unreachable_since, status.last_error) == ("unreachable", 900.0, "refused")


def test_without_an_agent_the_link_is_unknown_and_the_files_speak():
    status = agent_status(name="alpha", interface="mesh0", identity=IDENTITY, netmap=None, stats=(), now=NOW,
                          control=None)
    assert (status.control, status.control_url, status.mesh_ip, status.revision, status.peers) == (
        "unknown", None, "100.64.0.1", None, [])
    assert status.writes is None  # counted by a running agent only


def test_a_node_that_knows_nothing_yet():
    status = agent_status(name="new", interface="mesh0", identity=None, netmap=None, stats=STATS, now=NOW,
                          control=ControlStatus())
    assert (status.node_id, status.mesh_ip, status.control, status.peers, status.rejected) == (
        None, None, "unreachable", [], [])
