"""The shapes of the control plane's JSON answers: what `views.py` builds and the OpenAPI spec documents.

Owns the fields of each 200/201 body that is not already a `meshcommon.contract.wire` struct (ChallengeAnswer,
Registered, HeartbeatAnswer and the netmaps are). Answers are encoded through these structs, so
an answer cannot leave its documented shape; schemathesis' response schema check
(tests/control/test_openapi_conformance.py) checks the server as a whole keeps to them.
Fields are required as answered; unknown fields are allowed, so adding one is not a break.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from control.rules.records import JoinTokenRecord, TokenState
from meshcommon.contract import wire
from meshcommon.contract.wire import ChallengeAnswer, HeartbeatAnswer, NodeView, Registered


class HealthAnswer(msgspec.Struct):
    status: Literal["ok"]
    revision: int
    loaded_revision: int


class FullNetmapAnswer(wire.FullNetmap[NodeView], frozen=True):
    __doc__ = wire.FullNetmap.__doc__  # the wire struct with decoded peers, named as the spec names it


class DeltaNetmapAnswer(wire.DeltaNetmap[NodeView], frozen=True):
    __doc__ = wire.DeltaNetmap.__doc__


class TunnelDownAnswer(msgspec.Struct, frozen=True):
    """A peer the node's agent reports no working tunnel to: since when (unix time) and why."""

    node_id: str
    since: float
    reason: str


class NodeDetail(NodeView, frozen=True, kw_only=True):
    created_at: float
    last_seen: float | None
    applied_revision: int | None
    changed_revision: int
    tunnels_down: list[TunnelDownAnswer]  # as the node's agent last reported them
    agent_version: str | None = None  # as its agent said when it last registered (None: unknown)


class UnhealthyPair(msgspec.Struct, frozen=True):
    """Two nodes without a working tunnel now: ids and names in the same order, since when, why."""

    nodes: list[str]
    names: list[str]
    since: float
    reason: str
    reported_by: list[str]


class MeshHealthAnswer(msgspec.Struct, frozen=True):
    """Every pair without a working tunnel (empty on a healthy mesh), and the bound agents judge by."""

    revision: int
    bound: float
    pairs: list[UnhealthyPair]


class NodeList(msgspec.Struct):
    revision: int
    nodes: list[NodeDetail]


class Deleted(msgspec.Struct):
    deleted: str
    revision: int


class JoinTokenAnswer(JoinTokenRecord, frozen=True):
    state: TokenState


class JoinTokenCreated(JoinTokenAnswer, frozen=True):
    token: str


class JoinTokenList(msgspec.Struct):
    join_tokens: list[JoinTokenAnswer]


ANSWERS = [ChallengeAnswer, Registered, HeartbeatAnswer, HealthAnswer, FullNetmapAnswer, DeltaNetmapAnswer, NodeDetail,
           NodeList, Deleted, JoinTokenAnswer, JoinTokenCreated, JoinTokenList, MeshHealthAnswer]
