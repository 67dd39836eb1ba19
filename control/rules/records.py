"""The plain data the registry takes and the store returns: frozen dataclasses and structs, no I/O (pure).

Owns the shapes that cross between the HTTP edge, the registry and the store: what a registration,
a heartbeat or a join-token request asks for (the edge turns request bodies into these, so no HTTP
schema reaches the registry), the rows the store reads (`NodeRecord`, `JoinTokenRecord`,
`StateRecord`), what the registry answers with, and the `Loaded` membership the workers' caches
take in. A join token's state at a time is a rule of the data, so it is here, once.
Must not import the store, the database or anything with I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from control.rules.ipam import Network
from meshcommon.contract.wire import NodeView

TokenState = Literal["active", "used", "expired", "revoked"]


@dataclass(frozen=True)
class RegistrySettings:
    """The mesh prefix and the liveness timings the registry enforces and announces to nodes."""

    prefix: Network
    heartbeat_interval: float = 2.0
    offline_after: float = 6.0
    sweep_interval: float = 0.5

    @property
    def disruption_hold(self) -> float:
        """How long nodes that fell silent together (most of them) stay online: a minute by default."""
        return 10 * self.offline_after

    @property
    def late_after(self) -> float:
        """Silent this long, a node missed a heartbeat: it counts towards a disruption."""
        return min(self.offline_after, 1.5 * self.heartbeat_interval)

    @property
    def gap_limit(self) -> float:
        """A pause in sweeping longer than this means the control plane was down: grant grace."""
        return max(2.0, 4 * self.sweep_interval)


# -- what is asked ------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """Enrol a node (join token) or update it (its node token); nonce and proof prove its key.
    `reflexive_endpoint` is where the request came from, with the node's listen port (None: unusable)."""

    public_key: str
    name: str
    listen_port: int
    endpoint: str | None
    nonce: str | None = None
    proof: str | None = None
    reflexive_endpoint: str | None = None
    agent_version: str | None = None  # what its User-Agent said (`agent_version`), for operators only


AGENT_PRODUCT = re.compile(r"meshagent/([0-9][0-9A-Za-z.+-]{0,31})(?:\s|$)")


def agent_version(user_agent: str | None) -> str | None:
    """The meshagent version a request's User-Agent names (`meshagent/0.3.0`), else None: a node
    controls the header, so only a short version of safe characters is kept."""
    found = AGENT_PRODUCT.match(user_agent or "")
    return found.group(1) if found else None


@dataclass(frozen=True)
class TunnelDown:
    """A peer a node reports no working tunnel to: since when (control-plane clock) and why."""

    node_id: str
    since: float
    reason: str


@dataclass(frozen=True)
class ReportedDown:
    """A peer a node reports no working tunnel to, as it said it: for how many seconds and why."""

    node_id: str
    down_for: float
    reason: str


@dataclass(frozen=True)
class HeartbeatSent:
    """A heartbeat as the edge read it: what the node applied, the address the request came from,
    and the tunnels it reports down (None: unchanged since its last report)."""

    applied_revision: int | None
    source_address: str | None
    tunnels_down: tuple[ReportedDown, ...] | None


@dataclass(frozen=True)
class HeartbeatReport:
    """A heartbeat as received at `seen`: what the node applied, the address it came from, and the
    tunnels it reports down (None: unchanged since its last report)."""

    seen: float
    applied_revision: int | None
    reflexive_endpoint: str | None = None
    tunnels_down: tuple[TunnelDown, ...] | None = None


@dataclass(frozen=True)
class JoinTokenRequest:
    reusable: bool = False
    ttl_seconds: float | None = 3600.0  # None: never expires (until revoked)
    description: str = ""


# -- what is stored -----------------------------------------------------------

@dataclass(frozen=True)
class NodeRecord:
    id: str
    name: str
    public_key: str
    mesh_ip: str
    endpoint: str | None
    listen_port: int
    token_hash: str
    created_at: float
    last_seen: float
    online: bool
    applied_revision: int | None
    changed_revision: int
    reflexive_endpoint: str | None = None
    tunnels_down: tuple[TunnelDown, ...] = ()
    name_pinned: bool = False  # renamed by an admin: re-registrations keep the name
    agent_version: str | None = None  # its agent's version when it last registered (None: unknown)


class JoinTokenRecord(msgspec.Struct, frozen=True):
    """A join token as stored, but for its hash (the token itself is never stored). A struct:
    the answers about a join token (`answers.JoinTokenAnswer`) are this and its state."""

    id: str
    reusable: bool
    description: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    uses: int

    def state_at(self, now: float) -> TokenState:
        """Revoked beats expired beats used; a token in any of those states admits nobody."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if not self.reusable and self.uses:
            return "used"
        return "active"


@dataclass(frozen=True)
class StateRecord:
    """The mesh-state row: the membership revision, the change-log horizon and sweeper bookkeeping."""

    revision: int
    horizon: int
    last_ip: str | None  # the mesh IP allocated last
    last_sweep_at: float | None
    grace_until: float


# -- what is answered ---------------------------------------------------------

@dataclass(frozen=True)
class Enrolled:
    """A registration's outcome: the node as stored, its token and the revision it is current at."""

    node: NodeRecord
    node_token: str
    revision: int


@dataclass(frozen=True)
class JoinTokenStatus:
    token: JoinTokenRecord
    state: TokenState


@dataclass(frozen=True)
class Loaded:
    """Membership read from the store for a worker's in-process cache."""

    revision: int
    horizon: int
    changes: list[tuple[int, str]]
    nodes: dict[str, tuple[NodeView, str]]  # node id -> (view, token hash); changed ids only when partial
    full: bool
