"""The chat peer-to-peer protocol: length-prefixed JSON frames with an acknowledgement. Pure.

Owns the frame format and the two messages a frame carries, and refuses (`ProtocolError`)
anything else; connections are `chat.transport`'s. A frame is a 4-byte big-endian length and
that many bytes of JSON. The sender sends a `Message`; the receiver answers an `Ack` with the
same id once it has stored it. Identity is the connection's source mesh IP, never a field here.
"""
from __future__ import annotations

import struct
from typing import Annotated

import msgspec
from msgspec import Meta

MAX_FRAME = 16 * 1024
HEADER = struct.Struct(">I")


class ProtocolError(ValueError):
    pass


class Message(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    text: Annotated[str, Meta(min_length=1, max_length=4000)]
    sent_at: float


class Ack(msgspec.Struct, forbid_unknown_fields=True):
    ack: str


def encode(item: Message | Ack) -> bytes:
    body = msgspec.json.encode(item)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length == 0 or length > MAX_FRAME:
        raise ProtocolError(f"frame length {length} outside 1..{MAX_FRAME}")
    return length


def decode(body: bytes, kind: type):
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"malformed {kind.__name__}: {exc}") from None
