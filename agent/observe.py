"""Observe: read the system into the agent's data types. Read-only.

Owns reading the interface, its addresses, WireGuard peers and our routes into an `Observed`
(netlink and `wg.device`: no subprocess), and the address this host would send from toward the
control plane (the endpoint it advertises when none is configured). Routes the agent installs
carry their own protocol number, so only those (in the main table, via the interface) are
observed and ever removed: routes someone else added are left alone. The route dump is read on a
plain netlink socket and parsed here (`our_routes`), because pyroute2 takes a turn of an event
loop per message: 60-150 ms for the 1,000 routes of a 1,000-peer node, every pass. Must not
change anything.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
from urllib.parse import urlsplit

from pyroute2.iproute.linux import IPRoute

from agent import wg
from agent.core.model import Observed

ROUTE_PROTO = 77  # rtnetlink protocol number marking meshvpn's routes
MAIN_TABLE = 254
NLMSG_ERROR, NLMSG_DONE, RTM_NEWROUTE, RTM_GETROUTE = 2, 3, 24, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
ATTR = struct.Struct("=HH")  # rtattr: length, type


@functools.lru_cache(maxsize=8192)  # every pass reads every route again: format each address once
def _address_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    found = {}
    while start + ATTR.size <= end:
        length, kind = ATTR.unpack_from(data, start)
        if length < ATTR.size:
            break
        found[kind] = data[start + ATTR.size:start + length]
        start += (length + 3) & ~3
    return found


def our_routes(data: bytes, index: int) -> tuple[set[str], bool]:
    """The destinations of meshvpn's routes via interface `index` (main table) among the messages of
    one read of a route dump, and whether the dump ended. Pure; an error message raises OSError."""
    found: set[str] = set()
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, _flags, _seq, _port = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            raise OSError(f"malformed netlink message (length {length})")
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, offset + HEADER.size)[0]
            raise OSError(code, os.strerror(code))
        if kind == RTM_NEWROUTE:
            _family, dst_len, _, _, table, protocol, _, _, _ = RTMSG.unpack_from(data, offset + HEADER.size)
            if protocol == ROUTE_PROTO:
                attributes = _attributes(data, offset + HEADER.size + RTMSG.size, offset + length)
                if RTA_TABLE in attributes:
                    table = struct.unpack("=I", attributes[RTA_TABLE])[0]
                oif = attributes.get(RTA_OIF)
                if (table == MAIN_TABLE and RTA_DST in attributes and oif is not None
                        and struct.unpack("=I", oif)[0] == index):
                    found.add(f"{_address_text(attributes[RTA_DST])}/{dst_len}")
        offset += (length + 3) & ~3
    return found, False


def read_routes(index: int) -> frozenset[str]:
    """meshvpn's routes via interface `index`, IPv4 and IPv6, from one rtnetlink dump."""
    found: set[str] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(5.0)
        # AF_UNSPEC alone would dump IPv4 only; an out-of-range family asks for every family.
        request = RTMSG.pack(255, 0, 0, 0, 0, 0, 0, 0, 0)
        sock.send(HEADER.pack(HEADER.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
        done = False
        while not done:
            routes, done = our_routes(sock.recv(1 << 16), index)
            found |= routes
    return frozenset(found)


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
        routes = read_routes(index)
    try:
        device = wg.device(interface)
    except wg.WgError:
        device = None
    if device is None:
        return Observed(exists=True, up=up, addresses=addresses, routes=routes)
    return Observed(True, up, addresses, device.listen_port, device.peers, routes, device.stats, device.public_key)


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
