"""The syntax of a WireGuard endpoint as meshvpn accepts it: a numeric unicast address and a port.

Pure. Owns the one rule the control plane enforces at its edge and the agent enforces again on
intake: `IPv4:PORT` or `[IPv6]:PORT` (no IPv4-mapped IPv6, whose special ranges `ipaddress` does
not see through), the port plain ASCII digits without leading zeros in 1-65535, the address one
other nodes can reach. No DNS names: resolving a name inside `wg syncconf` blocks the whole
configuration for seconds, so one node's bad name would stall every agent. No scope id
(`[fe80::1%eth0]`) and no link-local address (169.254.0.0/16, fe80::/10, the cloud metadata
address among them): a scope names an interface of the host that wrote it, never one of its
peers', and a peer's kernel cannot resolve it (a `wg syncconf` with it fails whole).
"""
from __future__ import annotations

import ipaddress
import re

PORT = re.compile(r"[1-9][0-9]{0,4}")
IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # "this host on this network": never a destination
MAX_LENGTH = 64  # "[" + 45 characters of IPv6 + "]:" + 5 of port, with room to name what is wrong


class BadEndpoint(ValueError):
    pass


def parse(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """(address, port) of an endpoint, or BadEndpoint saying what is wrong with it."""
    if not isinstance(text, str) or not text.isascii() or not text.isprintable() or len(text) > MAX_LENGTH:
        raise BadEndpoint(f"endpoint {text!r} must be printable ASCII of at most {MAX_LENGTH} characters")
    host, sep, port = text.rpartition(":")
    if not sep or not PORT.fullmatch(port) or int(port) > 65535:
        raise BadEndpoint(f"endpoint {text!r} must end in :PORT, PORT 1-65535 without leading zeros")
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:
            raise BadEndpoint(f"endpoint {text!r} has a scope id: it names an interface of the node that sent it, "
                              "not of its peers")
        if not IPV6.fullmatch(host[1:-1]):
            raise BadEndpoint(f"endpoint {text!r}: [IPv6] expected")
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadEndpoint(f"endpoint {text!r} has an invalid IPv6 address") from None
    elif IPV4.fullmatch(host):
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            raise BadEndpoint(f"endpoint {text!r} has an invalid IPv4 address") from None
    else:
        raise BadEndpoint(f"endpoint {text!r}: the host must be an IPv4 address or an [IPv6] address, not a name")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise BadEndpoint(f"endpoint {text!r} is an IPv4-mapped IPv6 address: give the IPv4 address")
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip == LIMITED_BROADCAST or ip in THIS_NETWORK:
        raise BadEndpoint(f"endpoint {text!r} is not a unicast address other nodes can reach")
    if ip.is_link_local:
        raise BadEndpoint(f"endpoint {text!r} is link-local: it means another host on every peer's own link")
    return ip, int(port)


def is_valid(text: object) -> bool:
    try:
        parse(text)  # type: ignore[arg-type]
        return True
    except BadEndpoint:
        return False
