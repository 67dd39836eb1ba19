"""Paths: which underlay endpoint each peer gets, and where an endpoint WireGuard uses came from. Pure.

Owns the endpoint model. A peer offers candidates: the endpoint it advertises and the reflexive one
(where the control plane sees its requests come from, with its WireGuard port). The agent tries
them in order, each for ATTEMPT seconds, until one yields a handshake, and then leaves the peer
alone: while a handshake is fresh the endpoint WireGuard uses is never rewritten, because it may
have been learned from authenticated traffic (roaming, e.g. a NAT's mapping), which no netmap knows
better. A change of the peer's candidates (it moved) starts over with the first one.

Order: a peer behind NAT (its reflexive address differs from what it advertises) is tried at its
reflexive endpoint first, unless this node sits behind the same public address (the same site:
its advertised LAN address is the way); otherwise the advertised endpoint first. Both ends of a
pair order alike, so two natted nodes send to each other's reflexive endpoints at once, which is
what opens port-preserving NATs. Must not do I/O or read the clock: `now` is passed in.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from agent.core.model import Netmap, PeerStats
from meshcommon.contract import endpoint as endpoint_rule
from meshcommon.contract.addresses import behind_nat, host
from meshcommon.contract.timings import HANDSHAKE_FRESH
from meshcommon.contract.wire import NodeView

ATTEMPT = 12.0  # seconds per candidate without a handshake: WireGuard retries an initiation every 5 s


class Source(StrEnum):
    ADVERTISED = "advertised"
    REFLEXIVE = "reflexive"
    ROAMED = "roamed"  # learned by WireGuard from the peer's authenticated packets


@dataclass(frozen=True)
class Attempt:
    """What the agent last chose for a peer: among which candidates (and the advertised endpoint they
    were offered with), which one, since when; `settled` while the peer's handshake is fresh."""

    candidates: tuple[str, ...]
    advertised: str | None
    index: int
    since: float
    settled: bool = False


@dataclass(frozen=True)
class Choice:
    """The endpoint to write for a peer (None: leave WireGuard's as it is), and whether it is a new
    try for a peer already configured (so the caller nudges it into a handshake at once)."""

    endpoint: str | None
    attempt: Attempt | None
    switched: bool = False


def advertisable(found: str | None, netmap: Netmap | None) -> str | None:
    """A discovered endpoint the control plane and the peers can use, else None (peers then reach
    this node at its reflexive endpoint): a control URL reached over the mesh, or by a link-local
    route, yields an address that is refused as an endpoint, and a refused registration would keep
    this node out of the mesh."""
    if found is None or not endpoint_rule.is_valid(found):
        return None
    address = host(found)
    if netmap is not None and address is not None and address in ipaddress.ip_network(netmap.mesh_prefix):
        return None
    return found


def candidates(peer: NodeView, me: NodeView) -> tuple[str, ...]:
    """The peer's endpoints in the order to try them, without repeats."""
    advertised, reflexive = peer.endpoint, peer.reflexive_endpoint
    same_site = reflexive is not None and host(reflexive) == host(me.reflexive_endpoint)
    nat = behind_nat(peer.endpoint, reflexive)
    ordered = [reflexive, advertised] if nat and not same_site else [advertised, reflexive]
    found: list[str] = []
    for endpoint in ordered:
        if endpoint is not None and endpoint not in found:
            found.append(endpoint)
    return tuple(found)


def fresh(stats: PeerStats | None, now: float) -> bool:
    return stats is not None and stats.latest_handshake > 0 and now - stats.latest_handshake < HANDSHAKE_FRESH


def choose(peer: NodeView, me: NodeView, stats: PeerStats | None, attempt: Attempt | None, now: float) -> Choice:
    """The endpoint to write for `peer` now, given WireGuard's view of it (None: not configured yet)."""
    offered = candidates(peer, me)
    if not offered:
        return Choice(None, None)  # nothing to try: wait for the peer to reach us
    live = fresh(stats, now)
    moved = attempt is not None and attempt.advertised != peer.endpoint
    if live and not moved:
        # A live session keeps whatever path it has, roamed or not; so does an agent that restarted.
        return Choice(None, Attempt(offered, peer.endpoint, index_of(offered, stats), now, settled=True))
    if attempt is None or moved or attempt.candidates != offered:
        return Choice(offered[0], Attempt(offered, peer.endpoint, 0, now), switched=stats is not None)
    if not attempt.settled and now - attempt.since < ATTEMPT:
        return Choice(offered[attempt.index], attempt)
    # The try ran out, or a session that had worked went stale: the next candidate.
    index = (attempt.index + 1) % len(offered) if not attempt.settled else attempt.index
    return Choice(offered[index], Attempt(offered, peer.endpoint, index, now), switched=True)


def index_of(offered: tuple[str, ...], stats: PeerStats | None) -> int:
    """Where WireGuard's current endpoint is among the candidates (0 when it is none of them)."""
    current = stats.endpoint if stats else None
    return offered.index(current) if current in offered else 0


def source_of(peer: NodeView, current: str | None) -> Source | None:
    """Where the endpoint WireGuard uses for `peer` came from (None: it has none)."""
    if current is None:
        return None
    if current == peer.endpoint:
        return Source.ADVERTISED
    if current == peer.reflexive_endpoint:
        return Source.REFLEXIVE
    return Source.ROAMED


def due(attempts: dict[str, Attempt], now: float) -> float | None:
    """Seconds until the earliest attempt runs out (so the next pass tries the next candidate)."""
    ends = [attempt.since + ATTEMPT - now for attempt in attempts.values() if not attempt.settled]
    return max(0.0, min(ends)) if ends else None
