"""The peer list, from the local agent's status (so it keeps working while the control plane is down).

Owns chat's view of the mesh: this node's mesh IP and name, and its peers by mesh IP with
whether they are online. `view_of` is pure; `read` asks the agent's local API and never the
control plane.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from meshcommon.contract.wire import AgentStatus
from meshcommon.plumbing import local_api_client as agent_api


@dataclass(frozen=True)
class Peer:
    name: str
    mesh_ip: str
    online: bool
    configured: bool


@dataclass(frozen=True)
class View:
    """This node's mesh IP and its peers by mesh IP. Pure data."""

    mesh_ip: str | None
    name: str | None
    peers: dict[str, Peer]

    def as_dict(self) -> dict:
        return {"mesh_ip": self.mesh_ip, "name": self.name,
                "peers": [asdict(p) for p in sorted(self.peers.values(), key=lambda p: (p.name, p.mesh_ip))]}


def view_of(status: AgentStatus) -> View:
    peers = {p.mesh_ip: Peer(p.name or "?", p.mesh_ip, p.online, p.configured) for p in status.peers if p.mesh_ip}
    return View(status.mesh_ip, status.name, peers)


def reader(state_dir: Path) -> agent_api.StatusClient:
    """A client of the agent's status to pass to `read` on every poll (made once: see StatusClient)."""
    return agent_api.StatusClient(agent_api.socket_path(state_dir), timeout=3)


def read(client: agent_api.StatusClient) -> View | None:
    """The agent's current view, or None when no agent answers."""
    try:
        return view_of(client.fetch())
    except (httpx.HTTPError, OSError, ValueError):
        return None
