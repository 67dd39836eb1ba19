"""WireGuard's generic netlink requests (the kernel's), as the arguments of pyroute2's `WireGuard.set`. Pure.

Owns the kernel twin of `uapi`'s `set=1` requests, with the same meaning, one request each: one
peer added or updated (its allowed IPs replaced, its keepalive, its endpoint only when the agent
chose one), one peer removed (the kernel never creates a peer it is asked to remove), the private
key or listen port (only what is given). An endpoint must be numeric (the kernel resolves no
names); a value the kernel could not take raises ValueError here, before any request, so that
peer alone fails. Must not do I/O (`wg.Netlink` sends them).
"""
from __future__ import annotations

import ipaddress

from agent.core.model import WgPeer
from agent.core.uapi import numeric_endpoint
from meshcommon.contract import keys


def _key(key: str) -> str:
    keys.decode32(key, "a WireGuard key")  # BadKey, a ValueError: that request alone fails
    return key


def set_peer(peer: WgPeer) -> dict:
    """Add `peer`, or make an existing one exactly this: allowed IPs replaced, keepalive set, and an
    endpoint only when one is given (None keeps the kernel's own, e.g. a roamed one)."""
    request: dict = {"public_key": _key(peer.public_key), "replace_allowed_ips": True,
                     "allowed_ips": [str(ipaddress.ip_network(ip)) for ip in peer.allowed_ips],
                     "persistent_keepalive": int(peer.keepalive)}
    if peer.endpoint is not None:
        address, port = numeric_endpoint(peer.endpoint)
        request["endpoint_addr"], request["endpoint_port"] = str(address), port
    return {"peer": request}


def remove_peer(public_key: str) -> dict:
    return {"peer": {"public_key": _key(public_key), "remove": True}}


def set_device(private_key: str | None = None, listen_port: int | None = None) -> dict:
    """The private key and/or the listen port: only what is given."""
    request: dict = {}
    if private_key is not None:
        request["private_key"] = _key(private_key)
    if listen_port is not None:
        request["listen_port"] = int(listen_port)
    return request
