"""Observe: read the system into the agent's data types. Read-only.

Owns reading the interface, its addresses, WireGuard peers and our routes into an `Observed`, and
the address this host would send from toward the control plane (the endpoint it advertises when
none is configured). Routes the agent installs carry their own protocol number, so only those are
observed (and ever removed): routes someone else added are left alone. Must not change anything.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from pyroute2 import IPRoute

from agent import wg
from agent.model import Observed

ROUTE_PROTO = 77  # rtnetlink protocol number marking meshvpn's routes


def link_index(ipr: IPRoute, interface: str) -> int | None:
    found = ipr.link_lookup(ifname=interface)
    return found[0] if found else None


def observe(interface: str) -> Observed:
    with IPRoute() as ipr:
        index = link_index(ipr, interface)
        if index is None:
            return Observed(exists=False)
        link = ipr.get_links(index)[0]
        up = bool(link["flags"] & 1)
        # Link-local addresses belong to the kernel, not to us: never observed, never removed.
        addresses = frozenset(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)
                              if not a.get_attr("IFA_ADDRESS", "").startswith("fe80:"))
        routes = frozenset(f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                           for family in (2, 10) for r in ipr.get_routes(family=family, oif=index)
                           if r["proto"] == ROUTE_PROTO and r.get_attr("RTA_DST"))
    try:
        dump = wg.show_dump(interface)
    except wg.WgError:
        return Observed(exists=True, up=up, addresses=addresses, routes=routes)
    return Observed(True, up, addresses, dump.listen_port, dump.peers, routes, dump.stats)


def advertised_endpoint(control_url: str, listen_port: int) -> str | None:
    """The source address the kernel would use toward the control plane, with our listen port.

    Blocking (DNS, netlink): call it from a worker thread, never on the event loop's."""
    host = urlsplit(control_url).hostname
    try:
        address = socket.getaddrinfo(host, None)[0][4][0]
        with IPRoute() as ipr:
            route = ipr.route("get", dst=address)[0]
        source = route.get_attr("RTA_PREFSRC")
    except (OSError, IndexError):
        return None
    if source is None or ipaddress.ip_address(source).is_loopback:
        return None
    return f"[{source}]:{listen_port}" if ":" in source else f"{source}:{listen_port}"
