"""The wire contract between control plane, agent and chat: msgspec structs of what crosses a socket.

Owns the shape of the netmap answers (full and delta), of the enrolment and heartbeat answers the
agent reads, and of the agent's local status (read by `meshagent status` and the chat daemon).
The control plane encodes through these, the agent and chat decode through them, and the OpenAPI
spec is generated from them, so the three cannot drift. Pure data: no I/O, no validation beyond
types (the agent validates every peer entry itself, one at a time, so one bad entry never costs
the others: netmap peers are decoded as `msgspec.Raw` first).
"""
from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec


class NodeView(msgspec.Struct, frozen=True):
    """The netmap-visible part of a node: what a peer needs to configure WireGuard."""

    node_id: str
    name: str
    mesh_ip: str
    public_key: str
    endpoint: str | None  # advertised by the node
    listen_port: int
    online: bool
    # Where the control plane sees the node's requests come from, with its listen port: behind a
    # port-preserving NAT, where its WireGuard packets leave from too. None when unusable.
    reflexive_endpoint: str | None = None


Entry = TypeVar("Entry", NodeView, msgspec.Raw)


class FullNetmap(msgspec.Struct, Generic[Entry], frozen=True):
    """This node and every peer at `revision` (`delta: false`)."""

    revision: int
    mesh_prefix: str
    self: NodeView
    peers: list[Entry]
    delta: Literal[False] = False


class DeltaNetmap(msgspec.Struct, Generic[Entry], frozen=True):
    """What changed after `since` (`delta: true`): peers upserted with their whole entry, or removed."""

    revision: int
    since: int
    mesh_prefix: str
    self: NodeView
    upserted: list[Entry]
    removed: list[str]
    delta: Literal[True] = True


class _Kind(msgspec.Struct):
    delta: bool = False


def decode_netmap_entries(data: bytes) -> FullNetmap[msgspec.Raw] | DeltaNetmap[msgspec.Raw]:
    """The same answer with its peer entries left undecoded, for a receiver that checks them one
    by one (so one malformed entry is refused alone)."""
    if msgspec.json.decode(data, type=_Kind).delta:
        return msgspec.json.decode(data, type=DeltaNetmap[msgspec.Raw])
    return msgspec.json.decode(data, type=FullNetmap[msgspec.Raw])


class ChallengeAnswer(msgspec.Struct, frozen=True):
    nonce: str
    control_key: str
    expires_in: float


class Registered(msgspec.Struct, frozen=True):
    node_id: str
    name: str
    mesh_ip: str
    mesh_prefix: str
    node_token: str
    heartbeat_interval: float
    offline_after: float
    revision: int


class HeartbeatAnswer(msgspec.Struct, frozen=True):
    revision: int
    heartbeat_interval: float
    offline_after: float


class PeerStatus(msgspec.Struct, frozen=True):
    """One peer as the agent sees it: the netmap's view and WireGuard's counters."""

    node_id: str
    name: str
    mesh_ip: str
    public_key: str
    endpoint: str | None
    online: bool
    configured: bool
    latest_handshake: int | None
    latest_handshake_age: float | None
    rx: int
    tx: int
    reflexive_endpoint: str | None = None
    current_endpoint: str | None = None  # what WireGuard sends to now
    endpoint_source: str | None = None  # where that came from: advertised, reflexive or roamed


class RejectedPeer(msgspec.Struct, frozen=True):
    node_id: str
    reason: str


class WriteCounts(msgspec.Struct, frozen=True):
    """Writes the running agent has made since it started: to WireGuard and over rtnetlink."""

    wireguard: int
    netlink: int


class Histogram(msgspec.Struct, frozen=True):
    """Observations by bucket: `counts[i]` fell at or below `bounds[i]` (and above the bound
    before); the last count, beyond the last bound. Not cumulative."""

    bounds: list[float]
    counts: list[int]
    sum: float


class AgentStatus(msgspec.Struct, frozen=True):
    """`GET /status` on the agent's unix socket, and `meshagent status --json`."""

    node_id: str | None
    name: str
    mesh_ip: str | None
    public_key: str | None
    interface: str
    backend: str | None
    revision: int | None
    applied_revision: int | None
    control: Literal["connected", "unreachable", "unknown"]  # unknown: no agent running (from its files)
    control_url: str | None
    unreachable_since: float | None
    last_error: str | None
    peers: list[PeerStatus]
    rejected: list[RejectedPeer]
    writes: WriteCounts | None = None  # None: no agent running (what its files say)
    reconcile_seconds: Histogram | None = None  # how long its reconcile passes took; None: no agent running
