"""WireGuard's generic netlink requests (the kernel's), as the arguments of pyroute2's `WireGuard.set`. Pure.

Owns the kernel twin of `uapi`'s `set=1` requests, with the same meaning, one request each: one
peer added or updated (its allowed IPs replaced, its keepalive, its endpoint only when the agent
chose one), one peer removed (the kernel never creates a peer it is asked to remove), the private
key or listen port (only what is given). An endpoint must be numeric (the kernel resolves no
names); a value the kernel could not take raises ValueError here, before any request, so that
peer alone fails. Must not do I/O (`wg.Netlink` sends them).
"""
from __future__ import annotations

import base64
import ipaddress

from agent.core.model import WgPeer
from meshcommon.contract import keys


def _key(key: str) -> str:
    if len(base64.b64decode(key, validate=True)) != keys.KEY_LENGTH:
        raise ValueError(f"not a WireGuard key: {key[:60]!r}")
    return key


def _endpoint(endpoint: str) -> tuple[str, int]:
    """A numeric `IP:PORT` / `[IPv6]:PORT` as (address, port) (the kernel resolves no names)."""
    host, sep, port = endpoint.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        number = int(port)
    except ValueError:
        raise ValueError(f"not a numeric endpoint: {endpoint!r}") from None
    if not sep or not 0 < number < 65536 or "%" in host:  # a scope names an interface of another host
        raise ValueError(f"not a numeric endpoint: {endpoint!r}")
    return str(address), number


def set_peer(peer: WgPeer) -> dict:
    """Add `peer`, or make an existing one exactly this: allowed IPs replaced, keepalive set, and an
    endpoint only when one is given (None keeps the kernel's own, e.g. a roamed one)."""
    request: dict = {"public_key": _key(peer.public_key), "replace_allowed_ips": True,
                     "allowed_ips": [str(ipaddress.ip_network(ip)) for ip in peer.allowed_ips],
                     "persistent_keepalive": int(peer.keepalive)}
    if peer.endpoint is not None:
        request["endpoint_addr"], request["endpoint_port"] = _endpoint(peer.endpoint)
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
