"""UAPI: WireGuard's cross-platform userspace protocol (what wireguard-go serves on its socket), as text. Pure.

Owns the translation between that text and the agent's types: `get=1` answers (`key=value` lines:
the device, then one block per peer opened by its `public_key`, then `errno=`) read into a
`WgDevice`, and the `set=1` requests that change only what a plan names: one peer added or
updated (its allowed IPs replaced, its keepalive, its endpoint only when the agent chose one),
one peer removed (`update_only`, so removing a peer that is already gone is not an error and
never creates it), the private key or listen port. Keys are hex on the wire and base64 in the
agent. Never a `listen_port` the caller did not ask for: wireguard-go rebinds its UDP socket on
every one it is sent. Must not do I/O (`wg` talks to the socket).
"""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

from agent.core.model import PeerStats, WgDevice, WgPeer
from meshcommon.contract import keys

GET = b"get=1\n\n"  # the whole request for the device's state


class BadAnswer(ValueError):
    """Text that is not a UAPI answer."""


def to_hex(key: str) -> str:
    """A base64 key as UAPI writes it."""
    return base64.b64decode(key, validate=True).hex()


def from_hex(text: str) -> str:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise BadAnswer(f"not a hex key: {text[:80]!r}") from None
    if len(raw) != keys.KEY_LENGTH:
        raise BadAnswer(f"a key of {len(raw)} bytes")
    return base64.b64encode(raw).decode()


def errno_of(answer: str) -> int:
    """The `errno=` that ends an answer (0: done)."""
    for line in reversed(answer.splitlines()):
        if line.startswith("errno="):
            try:
                return int(line[len("errno="):])
            except ValueError:
                break
    raise BadAnswer(f"no errno in {answer[-80:]!r}")


@dataclass
class _Peer:
    public_key: str
    endpoint: str | None = None
    handshake: int = 0
    rx: int = 0
    tx: int = 0
    keepalive: int = 0
    allowed: list[str] | None = None


def _number(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadAnswer(f"{key}={value[:40]!r} is not a number") from None


def parse_get(answer: str) -> WgDevice:
    """A `get=1` answer as a device: its public key (from its private key), port, peers, counters."""
    if errno_of(answer) != 0:
        raise BadAnswer(f"get failed: errno={errno_of(answer)}")
    private_key: str | None = None
    listen_port: int | None = None
    peers: list[_Peer] = []
    for line in answer.splitlines():
        if not line or line.startswith("errno="):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BadAnswer(f"not a key=value line: {line[:80]!r}")
        if key == "public_key":
            peers.append(_Peer(from_hex(value), allowed=[]))
        elif not peers:
            if key == "private_key":
                private_key = from_hex(value)
            elif key == "listen_port":
                listen_port = _number(key, value)
        elif key == "endpoint":
            peers[-1].endpoint = value
        elif key == "last_handshake_time_sec":
            peers[-1].handshake = _number(key, value)
        elif key == "rx_bytes":
            peers[-1].rx = _number(key, value)
        elif key == "tx_bytes":
            peers[-1].tx = _number(key, value)
        elif key == "persistent_keepalive_interval":
            peers[-1].keepalive = _number(key, value)
        elif key == "allowed_ip":
            peers[-1].allowed.append(value)  # type: ignore[union-attr]
    return WgDevice(
        listen_port=listen_port,
        public_key=keys.public_key_of(private_key) if private_key else None,
        peers=tuple(WgPeer(p.public_key, tuple(sorted(p.allowed or ())), p.endpoint, p.keepalive) for p in peers),
        stats=tuple(PeerStats(p.public_key, p.endpoint, p.handshake, p.rx, p.tx) for p in peers))


def numeric_endpoint(endpoint: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """(address, port) of a numeric `IP:PORT` / `[IPv6]:PORT`: WireGuard resolves no names, and a
    scope names an interface of another host. ValueError otherwise (for UAPI and netlink alike)."""
    host, sep, port = endpoint.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        number = int(port)
    except ValueError:
        raise ValueError(f"not a numeric endpoint: {endpoint!r}") from None
    if not sep or not 0 < number < 65536 or "%" in host:
        raise ValueError(f"not a numeric endpoint: {endpoint!r}")
    return address, number


def _endpoint(endpoint: str) -> str:
    """An endpoint as UAPI takes it."""
    address, number = numeric_endpoint(endpoint)
    return f"[{address}]:{number}" if address.version == 6 else f"{address}:{number}"


def _request(lines: list[str]) -> bytes:
    return ("set=1\n" + "".join(line + "\n" for line in lines) + "\n").encode()


def set_peer(peer: WgPeer) -> bytes:
    """Add `peer`, or make an existing one exactly this: allowed IPs replaced, keepalive set, and an
    endpoint only when one is given (None keeps WireGuard's own, e.g. a roamed one)."""
    lines = [f"public_key={to_hex(peer.public_key)}", "replace_allowed_ips=true"]
    lines += [f"allowed_ip={ipaddress.ip_network(ip)}" for ip in peer.allowed_ips]
    lines.append(f"persistent_keepalive_interval={peer.keepalive}")
    if peer.endpoint is not None:
        lines.append(f"endpoint={_endpoint(peer.endpoint)}")
    return _request(lines)


def remove_peer(public_key: str) -> bytes:
    """Remove a peer; a peer that is already gone stays gone (`update_only`: never created to be removed)."""
    return _request([f"public_key={to_hex(public_key)}", "update_only=true", "remove=true"])


def set_device(private_key: str | None = None, listen_port: int | None = None) -> bytes:
    """Set the private key and/or the listen port: only what is given."""
    lines = []
    if private_key is not None:
        lines.append(f"private_key={to_hex(private_key)}")
    if listen_port is not None:
        lines.append(f"listen_port={int(listen_port)}")
    return _request(lines)
