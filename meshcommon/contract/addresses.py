"""IP address types and the host of an endpoint, as every part reads them. Pure.

Owns two rules the control plane and the agent both apply: which address an endpoint's text
names (`host`, lenient: a name or garbage is None, so it also reads what WireGuard shows) and
when a node sits behind NAT (`behind_nat`: its requests come from another address than the one it
advertises). The syntax an endpoint must have is `endpoint.parse`'s.
"""
from __future__ import annotations

import functools
import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8192)  # asked for every peer on every pass: parse each text once
def host(endpoint: str | None) -> Address | None:
    """The IP address of HOST:PORT or [IPv6]:PORT, or None when there is none or HOST is a name."""
    if endpoint is None:
        return None
    try:
        return ipaddress.ip_address(endpoint.rpartition(":")[0].strip("[]"))
    except ValueError:
        return None


def behind_nat(advertised: str | None, reflexive: str | None) -> bool:
    """Whether a node seen at `reflexive` is behind NAT: seen, and not at the address it advertises
    (or advertising none). The port alone differing is no NAT: peers reach the advertised one."""
    seen = host(reflexive)
    return seen is not None and seen != host(advertised)
