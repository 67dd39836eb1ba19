"""Request bodies and query values: one msgspec schema per route, validated at the edge.

Owns what a well-formed request is. Unknown fields are rejected; every string has a length and
an alphabet, and every number explicit bounds that the database can store (a value the store
cannot hold must never get past the edge, or it fails later for everyone in the same batch).
Key and endpoint rules come from `meshcommon`, shared with the agent.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from meshcommon.contract import endpoint as endpoints
from meshcommon.contract import keys

# Revisions are counters: 2^53 - 1 keeps them exact in every JSON client and in a signed BIGINT.
MAX_REVISION = 2**53 - 1
MAX_AGE = 10 * 365 * 86400.0  # seconds: ten years is "never" for a handshake age or a token TTL
B64_32 = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,63}$"
NODE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
DESCRIPTION_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"

PublicKey = Annotated[str, Meta(pattern=B64_32, description="WireGuard public key: base64 of 32 bytes, "
                                                            "not a low-order point")]
NodeName = Annotated[str, Meta(pattern=NAME_PATTERN,
                               description="Advisory, display-only name: 1-63 of letters, digits, -, _, .")]
NodeId = Annotated[str, Meta(pattern=NODE_ID_PATTERN)]
Port = Annotated[int, Meta(ge=1, le=65535)]
# The rule is `meshcommon.contract.endpoint.parse`, checked in __post_init__; openapi.py says it in JSON Schema.
Endpoint = Annotated[str, Meta(max_length=endpoints.MAX_LENGTH,
                               description="Underlay endpoint IPv4:PORT or [IPv6]:PORT: a unicast address "
                                           "(not unspecified, loopback, multicast or broadcast), no DNS names")]
Revision = Annotated[int, Meta(ge=0, le=MAX_REVISION)]
Age = Annotated[float, Meta(ge=0, le=MAX_AGE)]
Nonce = Annotated[str, Meta(pattern=B64_32, description="A nonce from GET /v1/challenge")]
Proof = Annotated[str, Meta(pattern=B64_32,
                            description="base64(HMAC-SHA256(X25519(node private key, control_key), "
                                        "nonce bytes + public key bytes))")]


def check_full(field: str, value: str, pattern: str) -> None:
    """JSON Schema's `$` (and so msgspec's) accepts a trailing newline: forbid it here."""
    if re.fullmatch(pattern[1:-1], value) is None:
        raise ValueError(f"{field} {value!r} is not valid: it must match {pattern}")


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    public_key: PublicKey
    name: NodeName
    listen_port: Port = 51820
    endpoint: Endpoint | None = None
    nonce: Nonce | None = None
    proof: Proof | None = None

    def __post_init__(self):
        check_full("name", self.name, NAME_PATTERN)
        keys.check_public_key(self.public_key)
        if self.endpoint is not None:
            endpoints.parse(self.endpoint)
        for field in ("nonce", "proof"):
            value = getattr(self, field)
            if value is not None:
                keys.decode32(value, field)
        if (self.nonce is None) != (self.proof is None):
            raise ValueError("nonce and proof go together")


class NodeRenameBody(msgspec.Struct, forbid_unknown_fields=True):
    name: NodeName

    def __post_init__(self):
        check_full("name", self.name, NAME_PATTERN)


class TunnelDownBody(msgspec.Struct, forbid_unknown_fields=True):
    """A peer this node has no working tunnel to: for how long, and what its WireGuard shows."""

    node_id: NodeId
    down_for: Age
    reason: Literal["no_handshake", "stale_handshake", "no_traffic"]

    def __post_init__(self):
        check_full("node_id", self.node_id, NODE_ID_PATTERN)


class HeartbeatBody(msgspec.Struct, forbid_unknown_fields=True):
    applied_revision: Revision | None = None
    # Every peer the node has no working tunnel to; absent or null: the same as its last report.
    tunnels_down: Annotated[list[TunnelDownBody], Meta(max_length=100_000)] | None = None


class JoinTokenCreateBody(msgspec.Struct, forbid_unknown_fields=True):
    reusable: bool = False
    ttl_seconds: Annotated[float, Meta(gt=0, le=MAX_AGE)] | None = 3600.0
    description: Annotated[str, Meta(max_length=200, pattern=DESCRIPTION_PATTERN)] = ""

    def __post_init__(self):
        check_full("description", self.description, DESCRIPTION_PATTERN)


def decode(body: bytes, schema: type):
    """Decode and validate a JSON body, raising ValueError with msgspec's message.

    msgspec is strict: `2.0` is no integer to it, while JSON Schema (and so our OpenAPI spec)
    says it is. A body refused only for that is decoded again with its top-level integral floats
    as ints (every integer of a request body is a top-level field): the members are kept as raw
    JSON and never walked, so the second try costs no more than the first, whatever the body's
    size or depth. Nesting too deep for the decoder is a ValueError like any other bad body.
    """
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        first = exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not FLOAT_FOR_INT.search(str(first)):
        raise ValueError(str(first))
    try:
        members = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
        again = b"{" + b",".join(msgspec.json.encode(key) + b":" + integral_as_int(value)
                                 for key, value in members.items()) + b"}"
        return msgspec.json.decode(again, type=schema)
    except msgspec.ValidationError as exc:  # what else is wrong with it
        raise ValueError(str(exc)) from None
    except (msgspec.DecodeError, RecursionError):
        raise ValueError(str(first)) from None


FLOAT_FOR_INT = re.compile(r"Expected `[^`]*\bint\b[^`]*`, got `float`")  # msgspec's words for 2.0 as an int
INTEGRAL = re.compile(rb"-?[0-9]+(\.0+)?([eE][+]?[0-9]+)?")


def integral_as_int(raw: msgspec.Raw) -> bytes:
    """A member's raw JSON, with an integral float literal (`2.0`, `2e3`) written as that int."""
    text = bytes(raw)
    if len(text) <= 32 and INTEGRAL.fullmatch(text) and not text.lstrip(b"-").isdigit():
        value = float(text)
        if value.is_integer() and abs(value) < 2 ** 63:
            return str(int(value)).encode()
    return text
