"""The shapes of the control plane's JSON answers: what `views.py` builds and the OpenAPI spec documents.

Owns the fields of each 200/201 body that is not already a `meshcommon.wire` struct (Challenge,
Registered, HeartbeatAnswer and the netmaps are). Answers are encoded through these structs, so
an answer cannot leave its documented shape; schemathesis' response schema check
(tests/control/test_openapi_conformance.py) checks the server as a whole keeps to them.
Fields are required as answered; unknown fields are allowed, so adding one is not a break.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from control.records import JoinTokenRecord, TokenState
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


class NodeDetail(NodeView, frozen=True):
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


class JoinToken(JoinTokenRecord, frozen=True):
    state: TokenState


class JoinTokenCreated(JoinToken, frozen=True):
    token: str


class JoinTokens(msgspec.Struct):
    join_tokens: list[JoinToken]


ANSWERS = [Challenge, Registered, HeartbeatAnswer, Health, FullNetmap, DeltaNetmap, NodeDetail, Nodes, Deleted,
           JoinToken, JoinTokenCreated, JoinTokens]
