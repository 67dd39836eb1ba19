"""Answer shapes: the JSON body of every answer but the netmap, built from plain data (pure).

Owns turning what the registry and the cache return into the structs of `answers.py` and
`meshcommon.contract.wire`, and how an answer orders its items (nodes by mesh IP). Netmaps are
encoded by the membership cache, which shares one encoding between thousands of watchers.
No I/O, no clock: the time a join token's state is judged at comes with it.
"""
from __future__ import annotations

import ipaddress

import msgspec

from control.api.answers import (
    Deleted,
    HealthAnswer,
    JoinTokenAnswer,
    JoinTokenCreated,
    JoinTokenList,
    MeshHealthAnswer,
    NodeDetail,
    NodeList,
    TunnelDownAnswer,
    UnhealthyPair,
)
from control.rules.pair_health import Pair
from control.rules.records import Enrolled, JoinTokenStatus, NodeRecord, RegistrySettings
from meshcommon.contract.timings import HEALTH_BOUND
from meshcommon.contract.wire import HeartbeatAnswer, Registered


def registered(enrolled: Enrolled, settings: RegistrySettings) -> Registered:
    node = enrolled.node
    return Registered(node_id=node.id, name=node.name, mesh_ip=node.mesh_ip, mesh_prefix=str(settings.prefix),
                      node_token=enrolled.node_token, heartbeat_interval=settings.heartbeat_interval,
                      offline_after=settings.offline_after, revision=enrolled.revision)


def heartbeat_answer(revision: int, settings: RegistrySettings) -> HeartbeatAnswer:
    return HeartbeatAnswer(revision=revision, heartbeat_interval=settings.heartbeat_interval,
                           offline_after=settings.offline_after)


def health(revision: int, loaded_revision: int) -> HealthAnswer:
    return HealthAnswer(status="ok", revision=revision, loaded_revision=loaded_revision)


def node_detail(node: NodeRecord) -> NodeDetail:
    return NodeDetail(node_id=node.id, name=node.name, mesh_ip=node.mesh_ip, public_key=node.public_key,
                      endpoint=node.endpoint, listen_port=node.listen_port, online=node.online,
                      reflexive_endpoint=node.reflexive_endpoint, created_at=node.created_at,
                      last_seen=node.last_seen, applied_revision=node.applied_revision,
                      changed_revision=node.changed_revision, agent_version=node.agent_version,
                      tunnels_down=[TunnelDownAnswer(down.node_id, down.since, down.reason)
                                    for down in node.tunnels_down])


def nodes(revision: int, records: list[NodeRecord]) -> NodeList:
    ordered = sorted(records, key=lambda node: ipaddress.ip_address(node.mesh_ip))
    return NodeList(revision=revision, nodes=[node_detail(node) for node in ordered])


def mesh_health(revision: int, pairs: list[Pair]) -> MeshHealthAnswer:
    return MeshHealthAnswer(revision=revision, bound=HEALTH_BOUND,
                      pairs=[UnhealthyPair(list(pair.nodes), list(pair.names), pair.since, pair.reason,
                                           list(pair.reported_by)) for pair in pairs])


def deleted(node_id: str, revision: int) -> Deleted:
    return Deleted(deleted=node_id, revision=revision)


def join_token(status: JoinTokenStatus) -> JoinTokenAnswer:
    return JoinTokenAnswer(**msgspec.structs.asdict(status.token), state=status.state)


def join_token_created(status: JoinTokenStatus, secret: str) -> JoinTokenCreated:
    return JoinTokenCreated(**msgspec.structs.asdict(join_token(status)), token=secret)


def join_tokens(statuses: list[JoinTokenStatus]) -> JoinTokenList:
    return JoinTokenList(join_tokens=[join_token(status) for status in statuses])
