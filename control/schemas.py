"""Request bodies: one msgspec schema per route, validated at the edge.

Owns what a well-formed request is. Unknown fields are rejected, lengths and
ranges are enforced by msgspec, and the rules msgspec cannot express (endpoint
syntax) are checked in `__post_init__`, so every schema error is a clear 400.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated

import msgspec
from msgspec import Meta

# Base64 of exactly 32 bytes: 42 free characters, one whose low bits are zero, one '='.
KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,63}$"
DESCRIPTION_PATTERN = r"^[^\x00-\x1f\x7f]*$"
PublicKey = Annotated[str, Meta(pattern=KEY_PATTERN, description="WireGuard public key: base64 of 32 bytes")]
NodeName = Annotated[str, Meta(pattern=NAME_PATTERN,
                               description="Advisory, display-only name: 1-63 of letters, digits, -, _, .")]
Port = Annotated[int, Meta(ge=1, le=65535)]
Endpoint = Annotated[str, Meta(max_length=300, description="Underlay endpoint HOST:PORT ([v6]:PORT)")]
Revision = Annotated[int, Meta(ge=0)]
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_full(field: str, value: str, pattern: str) -> None:
    """JSON Schema's `$` (and so msgspec's) accepts a trailing newline: forbid it here."""
    if re.fullmatch(pattern[1:-1], value) is None:
        raise ValueError(f"{field} {value!r} is not valid: it must match {pattern}")


def check_endpoint(text: str) -> str:
    """Validate HOST:PORT where HOST is an IPv4 address, [IPv6] or a DNS name."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"endpoint {text!r} must be HOST:PORT with a port in 1-65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"endpoint {text!r} has an invalid IPv6 address") from None
    elif not HOSTNAME.fullmatch(host):
        raise ValueError(f"endpoint {text!r} has an invalid host")
    return text


class Register(msgspec.Struct, forbid_unknown_fields=True):
    public_key: PublicKey
    name: NodeName
    listen_port: Port = 51820
    endpoint: Endpoint | None = None

    def __post_init__(self):
        check_full("public_key", self.public_key, KEY_PATTERN)
        check_full("name", self.name, NAME_PATTERN)
        if self.endpoint is not None:
            check_endpoint(self.endpoint)


class PeerHealth(msgspec.Struct, forbid_unknown_fields=True):
    node_id: Annotated[str, Meta(max_length=32)]
    latest_handshake_age: Annotated[float, Meta(ge=0)] | None = None


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True):
    applied_revision: Revision | None = None
    peers: Annotated[list[PeerHealth], Meta(max_length=100_000)] = []


class JoinTokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    reusable: bool = False
    ttl_seconds: Annotated[float, Meta(gt=0, le=10 * 365 * 86400)] | None = 3600.0
    description: Annotated[str, Meta(max_length=200, pattern=DESCRIPTION_PATTERN)] = ""

    def __post_init__(self):
        check_full("description", self.description, DESCRIPTION_PATTERN)


def decode(body: bytes, schema: type):
    """Decode and validate a JSON body, raising ValueError with msgspec's message."""
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
