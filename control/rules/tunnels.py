"""Paths between nodes as the control plane sees them: reflexive endpoints and the pair-health matrix. Pure.

Owns three rules. Which address a request came from (the TCP peer, or behind a proxy the control
plane was told to trust, the last address that proxy chain appended: never a header from anyone
else). The reflexive endpoint a node is offered to its peers with: that address and the node's
WireGuard listen port, only when it is a unicast address another node could reach (behind a
port-preserving NAT such as Linux masquerade this is where the node's WireGuard packets leave
from). And which pairs of nodes have no working tunnel now, from what each agent reports, with
one reason per pair an operator can act on. Must not do I/O or read the clock.
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from control.rules.records import NodeRecord
from meshcommon.contract import endpoint as endpoints

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The reasons an agent gives for a peer it has no working tunnel to, as operators read them.
AGENT_REASONS = {"no_handshake": "no handshake", "stale_handshake": "handshake expired",
                 "no_traffic": "nothing received"}


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (the `trusted_proxies` setting); ValueError naming the bad one."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: {item!r} is not an address or CIDR") from None
    return tuple(found)


def _address(text: str | None) -> Address | None:
    try:
        return ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None


# Those below are asked at every connection or heartbeat, with the few addresses a node's requests
# come from: remembered, they cost a dict lookup instead of parsing addresses (a bounded cache).
@functools.lru_cache(maxsize=16384)
def among(address: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether `address` lies in one of `networks` (is a trusted proxy, say)."""
    found = _address(address)
    return found is not None and any(found in net for net in networks)


@functools.lru_cache(maxsize=16384)
def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    """The address a request came from: the connection's peer, unless that peer is a trusted
    proxy; then the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    further left were written by the client and prove nothing)."""
    source = _address(peer)
    if source is None:
        return None
    if not trusted or not any(source in net for net in trusted) or not forwarded_for:
        return str(source)
    for entry in reversed(forwarded_for.split(",")):
        hop = _address(entry)
        if hop is None:
            return None  # a garbled chain: no address rather than a wrong one
        if not any(hop in net for net in trusted):
            return str(hop)
    return str(source)


@functools.lru_cache(maxsize=16384)
def reflexive_endpoint(address: str | None, listen_port: int) -> str | None:
    """`address` with the node's WireGuard port, or None when peers could not use it (loopback, ...)."""
    ip = _address(address)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    text = f"[{ip}]:{listen_port}" if ip.version == 6 else f"{ip}:{listen_port}"
    return text if endpoints.is_valid(text) else None


def behind_nat(node: NodeRecord) -> bool:
    """Whether the node's requests come from another address than the one it advertises."""
    if node.reflexive_endpoint is None:
        return False
    if node.endpoint is None:
        return True
    return endpoints.parse(node.endpoint)[0] != endpoints.parse(node.reflexive_endpoint)[0]


@dataclass(frozen=True)
class Pair:
    """Two nodes without a working tunnel: ids in order, since when, why, and who said so."""

    nodes: tuple[str, str]
    names: tuple[str, str]
    since: float
    reason: str
    reported_by: tuple[str, ...]


def pair_reason(a: NodeRecord, b: NodeRecord, agent_reasons: Iterable[str]) -> str:
    """One reason for an operator: an offline node first, then what the NAT situation explains."""
    offline = [node.name for node in (a, b) if not node.online]
    if offline:
        return f"peer offline ({', '.join(offline)})"
    reasons = set(agent_reasons)
    if behind_nat(a) and behind_nat(b) and reasons <= {"no_handshake", "stale_handshake"}:
        return "both behind NAT (no handshake: one side needs a port-preserving NAT or a public endpoint)"
    return ", ".join(AGENT_REASONS.get(reason, reason) for reason in sorted(reasons))


def unhealthy_pairs(records: Iterable[NodeRecord]) -> list[Pair]:
    """Every pair of nodes one of which (online) reports no working tunnel to the other, ordered by
    since when. A report from an offline node is not current and counts for nothing; a report
    naming a node that no longer exists is dropped."""
    by_id = {node.id: node for node in records}
    reports: dict[tuple[str, str], list[tuple[str, float, str]]] = {}
    for node in by_id.values():
        if not node.online:
            continue
        for down in node.tunnels_down:
            if down.node_id in by_id and down.node_id != node.id:
                key = (min(node.id, down.node_id), max(node.id, down.node_id))
                reports.setdefault(key, []).append((node.id, down.since, down.reason))
    pairs = []
    for (a, b), said in reports.items():
        first, second = by_id[a], by_id[b]
        pairs.append(Pair((a, b), (first.name, second.name), min(since for _, since, _ in said),
                          pair_reason(first, second, (reason for _, _, reason in said)),
                          tuple(sorted(reporter for reporter, _, _ in said))))
    return sorted(pairs, key=lambda pair: (pair.since, pair.nodes))
