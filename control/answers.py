"""The shapes of the control plane's JSON answers, for the OpenAPI spec only.

Owns the documented fields of each 200/201 body, so schemathesis' response schema check means
something. Nothing encodes through these structs: the service builds plain dicts and the
conformance test (tests/control/test_openapi_conformance.py) checks they keep to these shapes.
Fields are required as answered; unknown fields are allowed, so adding one is not a break.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from control.netmap import NodeView
from control.schemas import PeerHealth


class Challenge(msgspec.Struct):
    nonce: str
    control_key: str
    expires_in: float


class Registered(msgspec.Struct):
    node_id: str
    name: str
    mesh_ip: str
    mesh_prefix: str
    node_token: str
    heartbeat_interval: float
    offline_after: float
    revision: int


class HeartbeatAnswer(msgspec.Struct):
    revision: int
    heartbeat_interval: float
    offline_after: float


class Health(msgspec.Struct):
    status: Literal["ok"]
    revision: int
    loaded_revision: int


class FullNetmap(msgspec.Struct):
    revision: int
    delta: Literal[False]
    mesh_prefix: str
    self: NodeView
    peers: list[NodeView]


class DeltaNetmap(msgspec.Struct):
    revision: int
    delta: Literal[True]
    since: int
    mesh_prefix: str
    self: NodeView
    upserted: list[NodeView]
    removed: list[str]


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
