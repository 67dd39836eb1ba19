"""Desired state: a pure function from (netmap, local settings) to WireGuard config and routes.

Owns which peers this node configures and how. Only online peers are configured; a peer that
went offline or was deleted disappears from the desired state, and so from the interface, without
any manual action. AllowedIPs is exactly the peer's mesh IP/32 (/128 for IPv6). Which endpoint a
peer gets is `paths.choose`'s decision, passed in: None leaves WireGuard's own (a roamed one) alone.
Must not do I/O.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from agent.core.model import DesiredState, Netmap, WgPeer
from meshcommon.contract.timings import KEEPALIVE


def host_prefix(ip: str) -> str:
    return f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"


def desired_state(netmap: Netmap, interface: str, listen_port: int,
                  endpoints: Mapping[str, str | None] | None = None, public_key: str | None = None) -> DesiredState:
    """`endpoints`: public key -> the endpoint to write (None: leave it); without it, the advertised ones.
    `public_key`: this node's, whose private key the interface must hold (None: not checked)."""
    def endpoint(peer) -> str | None:
        return peer.endpoint if endpoints is None else endpoints.get(peer.public_key)

    peers = tuple(sorted(
        (WgPeer(peer.public_key, (host_prefix(peer.mesh_ip),), endpoint(peer), KEEPALIVE, peer.name)
         for peer in netmap.peers if peer.online),
        key=lambda p: p.public_key))
    routes = frozenset(ip for peer in peers for ip in peer.allowed_ips)
    # The address is a host route (/32): traffic to a mesh IP goes into the tunnel only while
    # that peer is configured, so a send to an offline peer fails at once ("no route").
    return DesiredState(interface, host_prefix(netmap.me.mesh_ip), listen_port, peers, routes, public_key)
