"""Owns the agent's plain data: frozen values shared by the pure and the effectful modules.

Must not import anything that does I/O. A peer in a validated netmap is a `meshcommon.contract.wire.NodeView`
(the wire's own type: `intake` only lets through entries that pass its checks, with the display name
reduced to a safe alphabet); the rest is the agent's own vocabulary: desired and observed interface
state, the plan between them, the steps `apply` reached, this node's identity and its link to the
control plane.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import msgspec

from meshcommon.contract.wire import NodeView, Registered


@dataclass(frozen=True)
class Netmap:
    """A validated netmap: this node, the peers that passed intake, and the entries that did not."""

    revision: int
    mesh_prefix: str
    me: NodeView
    peers: tuple[NodeView, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()  # (node id, reason) of entries refused by validation


class Identity(Registered, frozen=True):
    """This node's enrolment as `node.json` keeps it: the control plane's answer and where to reach it."""

    control_urls: list[str] = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class ControlStatus:
    """The agent's link to the control plane, as `meshagent status` shows it."""

    connected: bool = False
    url: str | None = None
    unreachable_since: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class WgPeer:
    """One [Peer] of the WireGuard config."""

    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    keepalive: int = 0
    name: str = ""  # comment only; never used by WireGuard


@dataclass(frozen=True)
class PeerStats:
    """WireGuard's counters for one peer."""

    public_key: str
    endpoint: str | None
    latest_handshake: int  # unix time, 0 = never
    rx: int
    tx: int


@dataclass(frozen=True)
class WgDevice:
    """What WireGuard reports of an interface (UAPI `get=1`, generic netlink or `wg show dump`)."""

    listen_port: int | None
    public_key: str | None  # of the interface's private key; None: it has none yet
    peers: tuple[WgPeer, ...]
    stats: tuple[PeerStats, ...]


@dataclass(frozen=True)
class DesiredState:
    interface: str
    address: str  # this node's mesh IP as a host prefix, e.g. 100.64.0.1/32
    listen_port: int
    peers: tuple[WgPeer, ...] = ()
    routes: frozenset[str] = field(default_factory=frozenset)  # destinations (mesh IP/32) via the interface
    public_key: str | None = None  # this node's: the interface must hold its private key (None: not checked)


@dataclass(frozen=True)
class Observed:
    """What the system has now, in the same terms as DesiredState."""

    exists: bool
    up: bool = False
    addresses: frozenset[str] = frozenset()
    listen_port: int | None = None
    peers: tuple[WgPeer, ...] = ()
    routes: frozenset[str] = frozenset()
    stats: tuple[PeerStats, ...] = ()  # WireGuard's view of each peer: its endpoint now, handshake, counters
    public_key: str | None = None  # of the private key the interface holds


@dataclass(frozen=True)
class Plan:
    create_interface: bool = False
    set_up: bool = False
    add_addresses: frozenset[str] = frozenset()
    remove_addresses: frozenset[str] = frozenset()
    set_private_key: bool = False  # the interface does not hold this node's key
    listen_port: int | None = None  # the port to listen on; None: it already does (never sent unchanged)
    peers_added: tuple[WgPeer, ...] = ()
    peers_removed: tuple[WgPeer, ...] = ()
    peers_updated: tuple[tuple[WgPeer, WgPeer], ...] = ()  # (observed, desired)
    add_routes: frozenset[str] = frozenset()
    remove_routes: frozenset[str] = frozenset()

    @property
    def sync_wireguard(self) -> bool:
        """Whether WireGuard's configuration changes at all."""
        return bool(self.set_private_key or self.listen_port is not None or self.peers_added or self.peers_removed
                    or self.peers_updated)

    @property
    def empty(self) -> bool:
        return not (self.create_interface or self.set_up or self.add_addresses or self.remove_addresses
                    or self.sync_wireguard or self.add_routes or self.remove_routes)


class StepKind(StrEnum):
    """What one step of `apply` reaches, and the change that reports it: the value is the name of the
    event (`changes.Change.kind`)."""

    INTERFACE_FOUND = "interface_found"
    INTERFACE_CREATED = "interface_created"
    ADDRESS_ADDED = "address_added"
    LINK_UP = "link_up"
    DEVICE_SET = "device_set"  # the interface's private key or listen port
    PEER_ADDED = "peer_added"  # one peer; the target is its public key
    PEER_UPDATED = "peer_updated"
    PEER_REMOVED = "peer_removed"
    ROUTE_ADDED = "route_added"
    ROUTE_REMOVED = "route_removed"
    ADDRESS_REMOVED = "address_removed"
    APPLY_ERROR = "apply_error"  # no step: the change that reports a step that failed


class Step(NamedTuple):
    """One thing `apply` set out to reach, and on what: the interface, an address, a route or a peer."""

    kind: StepKind
    target: str


class Failure(NamedTuple):
    """A step that was not reached, and the system's own words for why."""

    step: Step
    reason: str


@dataclass(frozen=True)
class Applied:
    """What one `apply` reached, in order, and what it could not (the next pass repairs it)."""

    done: tuple[Step, ...] = ()
    failed: tuple[Failure, ...] = ()
