"""What the agent wires together: the heartbeat's report."""
import pytest

from agent import agent
from agent.core.health import Tracker
from agent.core.model import PeerStats
from agent.reconcile import Reconciler
from agent.statedir import StateDir
from tests.agent.data import entry, netmap

pytestmark = pytest.mark.anyio


async def test_the_heartbeat_reports_the_applied_revision_and_the_tunnels_down_only_when_they_change(
        tmp_path, monkeypatch):
    asked, clock = [], [1000.0]
    current = netmap({"a": entry("a", "100.64.0.2")}, revision=4)
    stats = (PeerStats(current.peers[0].public_key, None, 0, 0, 0),)
    monkeypatch.setattr(agent.wg, "peer_stats", lambda interface: asked.append(interface) or stats)
    monkeypatch.setattr(agent.time, "time", lambda: clock[0])
    probed = []
    monkeypatch.setattr(agent, "nudge", probed.extend)  # a unit test sends nothing anywhere
    reconciler = Reconciler("mesh3", 51820, StateDir(tmp_path), "kernel", "PRIVATE", applied_revision=4)
    tracker = Tracker()
    assert await agent.heartbeat_body(reconciler, tracker, current) == {"applied_revision": 4, "tunnels_down": []}
    assert await agent.heartbeat_body(reconciler, tracker, current) == {"applied_revision": 4}  # unchanged
    clock[0] += 61  # configured for longer than the bound, and never a handshake
    assert await agent.heartbeat_body(reconciler, tracker, current) == {
        "applied_revision": 4, "tunnels_down": [{"node_id": "a", "down_for": 61.0, "reason": "no_handshake"}]}
    assert probed == ["100.64.0.2"], "a peer quiet for long is probed"
    assert await agent.heartbeat_body(reconciler, tracker, None) == {"applied_revision": 4}
    assert asked == ["mesh3"] * 3, "no `wg show` before there is a netmap"
