"""Status view: this node's view of the mesh as `meshcommon.contract.wire.AgentStatus`, and its peers' health. Pure.

Owns what `meshagent status` and the chat daemon see, from the same inputs whether the agent runs
(its memory, served on the unix socket by `status.py`) or not (its state directory: the link to the
control plane is then `unknown`). WireGuard's counters come in as `PeerStats`; where each peer's
endpoint came from is `paths.source_of`'s word; the running agent's count of its writes and the
durations of its reconcile passes are passed in.
Must not do I/O or read the clock: `now` is passed in.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from agent.core import endpoints as paths
from agent.core.model import ControlStatus, Identity, Netmap, PeerStats
from meshcommon.contract.wire import AgentStatus, Histogram, PeerStatus, RejectedPeer, WriteCounts


class Counted(Protocol):
    """The agent's count of its writes (`apply.Writes`)."""

    wireguard: int
    netlink: int


def handshake_age(stats: PeerStats | None, now: float) -> float | None:
    """Seconds since the peer's last handshake, to 0.1 s; None if there never was one."""
    if stats is None or not stats.latest_handshake:
        return None
    return round(now - stats.latest_handshake, 1)


def source_name(source: paths.Source | None) -> str | None:
    return None if source is None else source.value


def peer_statuses(netmap: Netmap | None, stats: Iterable[PeerStats], now: float) -> list[PeerStatus]:
    by_key = {s.public_key: s for s in stats}
    found = []
    for peer in (netmap.peers if netmap else ()):
        s = by_key.get(peer.public_key)
        found.append(PeerStatus(
            node_id=peer.node_id, name=peer.name, mesh_ip=peer.mesh_ip, public_key=peer.public_key,
            endpoint=peer.endpoint, online=peer.online, configured=s is not None,
            latest_handshake=s.latest_handshake if s and s.latest_handshake else None,
            latest_handshake_age=handshake_age(s, now), rx=s.rx if s else 0, tx=s.tx if s else 0,
            reflexive_endpoint=peer.reflexive_endpoint, current_endpoint=s.endpoint if s else None,
            endpoint_source=source_name(paths.source_of(peer, s.endpoint if s else None))))
    return found


def agent_status(*, name: str, interface: str, identity: Identity | None, netmap: Netmap | None,
                 stats: Iterable[PeerStats], now: float, control: ControlStatus | None,
                 public_key: str | None = None, backend: str | None = None,
                 applied_revision: int | None = None, writes: Counted | None = None,
                 reconcile_seconds: Histogram | None = None) -> AgentStatus:
    """The status; `control` is None when no agent runs (what its files say)."""
    link: Literal["connected", "unreachable", "unknown"] = "unknown"
    if control is None:
        control = ControlStatus()
    else:
        link = "connected" if control.connected else "unreachable"
    return AgentStatus(
        node_id=identity.node_id if identity else None, name=name,
        mesh_ip=netmap.me.mesh_ip if netmap else identity.mesh_ip if identity else None,
        public_key=public_key, interface=interface, backend=backend,
        revision=netmap.revision if netmap else None, applied_revision=applied_revision,
        control=link, control_url=control.url, unreachable_since=control.unreachable_since,
        last_error=control.last_error, peers=peer_statuses(netmap, stats, now),
        rejected=[RejectedPeer(node_id, reason) for node_id, reason in (netmap.rejected if netmap else ())],
        writes=None if writes is None else WriteCounts(writes.wireguard, writes.netlink),
        reconcile_seconds=reconcile_seconds)
