"""Plain data of the agent: frozen dataclasses shared by the pure and the effectful modules."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeerInfo:
    """A peer as the netmap describes it, after validation."""

    node_id: str
    name: str
    mesh_ip: str
    public_key: str
    endpoint: str | None
    online: bool


@dataclass(frozen=True)
class Netmap:
    revision: int
    mesh_prefix: str
    me: PeerInfo
    peers: tuple[PeerInfo, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()  # (node id, reason) of entries refused by validation


@dataclass(frozen=True)
class WgPeer:
    """One [Peer] of the WireGuard config."""

    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    keepalive: int = 0
    name: str = ""  # comment only; never used by WireGuard


@dataclass(frozen=True)
class DesiredState:
    interface: str
    address: str  # mesh IP with the mesh prefix length, e.g. 100.64.0.1/10
    listen_port: int
    peers: tuple[WgPeer, ...] = ()
    routes: frozenset[str] = field(default_factory=frozenset)  # destinations (mesh IP/32) via the interface


@dataclass(frozen=True)
class Observed:
    """What the system has now, in the same terms as DesiredState."""

    exists: bool
    up: bool = False
    addresses: frozenset[str] = frozenset()
    listen_port: int | None = None
    peers: tuple[WgPeer, ...] = ()
    routes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Plan:
    create_interface: bool = False
    set_up: bool = False
    add_addresses: frozenset[str] = frozenset()
    remove_addresses: frozenset[str] = frozenset()
    sync_wireguard: bool = False
    peers_added: tuple[WgPeer, ...] = ()
    peers_removed: tuple[WgPeer, ...] = ()
    peers_updated: tuple[tuple[WgPeer, WgPeer], ...] = ()
    add_routes: frozenset[str] = frozenset()
    remove_routes: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.create_interface or self.set_up or self.add_addresses or self.remove_addresses
                    or self.sync_wireguard or self.add_routes or self.remove_routes)
