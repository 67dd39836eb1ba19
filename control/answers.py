"""The shapes of the control plane's JSON answers, for the OpenAPI spec only.

Owns the documented fields of each 200/201 body, so schemathesis' response schema check means
something. Nothing encodes through these structs: the service builds plain dicts and the
conformance test (tests/control/test_openapi_conformance.py) checks they keep to these shapes.
Fields are required as answered; unknown fields are allowed, so adding one is not a break.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from control.schemas import PeerHealth
from meshcommon import wire
from meshcommon.wire import Challenge, HeartbeatAnswer, NodeView, Registered


class Health(msgspec.Struct):
    status: Literal["ok"]
    revision: int
    loaded_revision: int


class FullNetmap(wire.FullNetmap[NodeView], frozen=True):
    __doc__ = wire.FullNetmap.__doc__  # the wire struct with decoded peers, named as the spec names it


class DeltaNetmap(wire.DeltaNetmap[NodeView], frozen=True):
    __doc__ = wire.DeltaNetmap.__doc__


class NodeDetail(NodeView):
    created_at: float
    last_seen: float | None
    applied_revision: int | None
    changed_revision: int
    peer_health: list[PeerHealth]  # as the node's last heartbeat reported it


class Nodes(msgspec.Struct):
    revision: int
    nodes: list[NodeDetail]


class Deleted(msgspec.Struct):
    deleted: str
    revision: int


class JoinToken(msgspec.Struct):
    id: str
    reusable: bool
    description: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    uses: int
    state: Literal["active", "used", "expired", "revoked"]


class JoinTokenCreated(JoinToken):
    token: str


class JoinTokens(msgspec.Struct):
    join_tokens: list[JoinToken]


ANSWERS = [Challenge, Registered, HeartbeatAnswer, Health, FullNetmap, DeltaNetmap, NodeDetail, Nodes, Deleted,
           JoinToken, JoinTokenCreated, JoinTokens]
