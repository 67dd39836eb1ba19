"""The running agent: wires the control session, the reconciler and the status view together.

Owns the agent's lifetime (start: identity key, backend, the interface it manages, the cached
netmap; run until stopped) and the two things that need both halves: the heartbeat's report
(applied revision, peer health) and the live status. Must not hold policy of its own: retrying is
the session's, converging the reconciler's, what status says the status view's.
"""
from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

from agent import wg
from agent.apply import detect_backend, nudge
from agent.client import ControlClient
from agent.core import status_view
from agent.core.health import Tracker
from agent.core.model import Netmap
from agent.core.settings import AgentSettings
from agent.observe import advertised_endpoint
from agent.reconcile import Reconciler
from agent.session import Session
from agent.statedir import StateDir
from meshcommon.contract import keys
from meshcommon.contract.wire import AgentStatus
from meshcommon.plumbing.events import emit


@dataclass
class Agent:
    settings: AgentSettings
    state: StateDir
    client: ControlClient
    session: Session
    reconciler: Reconciler

    @classmethod
    async def start(cls, settings: AgentSettings, stop: asyncio.Event) -> Agent:
        """Everything before the first request: key, backend, the interface on record, the cached netmap."""
        state = StateDir(settings.state_dir)
        private_key = await asyncio.to_thread(state.private_key)
        backend = await asyncio.to_thread(detect_backend, settings.backend, settings.interface)
        emit("backend_selected", node=settings.name, backend=backend, reason=settings.backend)
        state.save_interface(settings.interface)  # so `meshagent down` removes this one
        client = ControlClient(list(settings.control_urls), ca=settings.ca)
        public_key = keys.public_key_of(private_key)
        reconciler = Reconciler(settings.interface, settings.listen_port, state, backend, private_key, public_key)
        session = Session(client, settings, state, private_key, public_key,
                          heartbeat_body=functools.partial(heartbeat_body, reconciler, Tracker()),
                          find_endpoint=advertised_endpoint, stop=stop)
        session.restore()
        return cls(settings, state, client, session, reconciler)

    async def run(self) -> None:
        """Reconcile and keep the session until stopped; the interface stays as it is."""
        tasks = [asyncio.create_task(self.reconciler.run(lambda: self.session.netmap, self.session.changed)),
                 asyncio.create_task(self.session.run())]
        try:
            await self.session.stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.session.cache.flush()
            await self.client.close()

    def stop(self) -> None:
        self.session.stop.set()

    def status(self) -> AgentStatus:
        """The live status (blocking: asks WireGuard for its counters)."""
        return status_view.agent_status(
            name=self.settings.name, interface=self.settings.interface, identity=self.session.identity,
            netmap=self.session.netmap, stats=wg.peer_stats(self.settings.interface), now=time.time(),
            control=self.session.control, public_key=self.session.public_key, backend=self.reconciler.backend,
            applied_revision=self.reconciler.applied_revision, writes=self.reconciler.writes,
            reconcile_seconds=self.reconciler.durations.snapshot())


async def heartbeat_body(reconciler: Reconciler, tracker: Tracker, netmap: Netmap | None) -> dict:
    """What a heartbeat reports: the revision the interface reached, and the tunnels down when that
    changed (or is due again); each tunnel going down or coming back is logged, and peers that
    have been quiet are probed (see `agent.core.health`)."""
    # Blocking I/O (WireGuard's socket or netlink): off the event loop, and not before there are peers to ask about.
    stats = await asyncio.to_thread(wg.peer_stats, reconciler.interface) if netmap else ()
    body: dict = {"applied_revision": reconciler.applied_revision}
    if netmap is None:
        return body
    names = {peer.node_id: peer.name for peer in netmap.peers}
    report = tracker.update(stats, {p.public_key: p.node_id for p in netmap.peers}, time.time())
    if report.probe:
        mesh_ips = {peer.public_key: peer.mesh_ip for peer in netmap.peers}
        nudge([mesh_ips[key] for key in report.probe if key in mesh_ips])
    for node_id, down in sorted(report.went_down.items()):
        emit("tunnel_down", node=netmap.me.node_id, peer=names.get(node_id), peer_id=node_id, reason=down.reason,
             since=down.since, revision=netmap.revision)
    for node_id in sorted(report.came_up):
        emit("tunnel_up", node=netmap.me.node_id, peer=names.get(node_id), peer_id=node_id,
             reason="received" if node_id in names else "peer_gone", revision=netmap.revision)
    if report.body is not None:
        body["tunnels_down"] = report.body
    return body
