"""Where a request came from, and the reflexive endpoint a node is offered to its peers with. Pure.

Owns two rules. Which address a request came from: the TCP peer, or behind a proxy the control
plane was told to trust, the last address that proxy chain appended (never a header from anyone
else). And the reflexive endpoint: that address with the node's WireGuard listen port, only when
it is a unicast address another node could reach (behind a port-preserving NAT such as Linux
masquerade this is where the node's WireGuard packets leave from). Must not do I/O or read the
clock.
"""
from __future__ import annotations

import functools
import ipaddress

from meshcommon.contract import endpoint as endpoints
from meshcommon.contract.addresses import Address, Network

MAX_FORWARDED = 1024  # characters of X-Forwarded-For read, from the right: far more than any proxy chain
MAX_HOPS = 16  # entries of it looked at, from the right


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
def counted_as(address: str | None) -> str | None:
    """The client a connection from `address` counts for in per-client caps: an IPv4 address, or
    the /64 of an IPv6 one (one host commonly holds a whole /64, and would otherwise take every
    slot); None for no address. Cached: asked at every connection, keyed on the TCP peer."""
    found = _address(address)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        found = found.ipv4_mapped
    if isinstance(found, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((found, 64), strict=False))
    return None if found is None else str(found)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    """The address a request came from: the connection's peer, unless that peer is a trusted
    proxy; then the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    further left were written by the client and prove nothing). Not cached: the header is the
    client's, and a cache keyed on it is memory any client can fill; a header longer than
    `MAX_FORWARDED` is read from its right end only (the entries a trusted proxy appended)."""
    source = _address(peer)
    if source is None:
        return None
    if not trusted or not among(str(source), trusted) or not forwarded_for:
        return str(source)
    whole = len(forwarded_for) <= MAX_FORWARDED
    # Cut, the chain's first entry may be a fragment of one: never read it as an address.
    chain = forwarded_for.split(",") if whole else forwarded_for[-MAX_FORWARDED:].split(",")[1:]
    for entry in reversed(chain[-MAX_HOPS:]):
        hop = _address(entry)
        if hop is None:
            return None  # a garbled chain: no address rather than a wrong one
        if not any(hop in net for net in trusted):
            return str(hop)
    return str(source) if whole and len(chain) <= MAX_HOPS else None  # past what was read: unknown


@functools.lru_cache(maxsize=16384)
def reflexive_endpoint(address: str | None, listen_port: int, mesh_prefix: Network | None = None) -> str | None:
    """`address` with the node's WireGuard port, or None when peers could not use it (loopback,
    link-local, ..., or a mesh IP: a node that reaches the control plane over the mesh)."""
    ip = _address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip is None or (mesh_prefix is not None and ip in mesh_prefix):
        return None
    text = f"[{ip}]:{listen_port}" if ip.version == 6 else f"{ip}:{listen_port}"
    return text if endpoints.is_valid(text) else None
