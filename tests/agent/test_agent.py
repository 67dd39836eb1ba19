"""What the agent wires together: the heartbeat's report."""
import pytest

from agent import agent
from agent.model import PeerStats
from agent.reconcile import Reconciler
from agent.state import StateDir
from tests.agent.data import entry, netmap

pytestmark = pytest.mark.anyio


async def test_the_heartbeat_reports_the_applied_revision_and_peer_health(tmp_path, monkeypatch):
    asked = []
    current = netmap({"a": entry("a", "100.64.0.2")}, revision=4)
    stats = (PeerStats(current.peers[0].public_key, None, 0, 0, 0),)
    monkeypatch.setattr(agent.wg, "peer_stats", lambda interface: asked.append(interface) or stats)
    reconciler = Reconciler("mesh3", 51820, StateDir(tmp_path), "kernel", "PRIVATE", applied_revision=4)
    assert await agent.heartbeat_body(reconciler, current) == {
        "applied_revision": 4, "peers": [{"node_id": "a", "latest_handshake_age": None}]}
    assert await agent.heartbeat_body(reconciler, None) == {"applied_revision": 4, "peers": []}
    assert asked == ["mesh3"], "no `wg show` before there is a netmap"
