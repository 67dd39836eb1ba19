"""Nodes: the SQL of the `node` table.

Owns how a node is read and written: its netmap view (the cache's source), its record, its
liveness columns and its peer health, kept as JSON text.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from control.models import Node
from control.records import HeartbeatReport, NodeRecord, PeerHandshake
from control.store import dicts, rows
from meshcommon.wire import NodeView

# The columns of a NodeView, in its field order, then the token hash the cache authenticates with.
VIEW_COLUMNS = (Node.id, Node.name, Node.mesh_ip, Node.public_key, Node.endpoint, Node.listen_port, Node.online,
                Node.token_hash)


def _record(row: dict[str, Any]) -> NodeRecord:
    health = tuple(PeerHandshake(peer["node_id"], peer["latest_handshake_age"])
                   for peer in json.loads(row.pop("peer_health")))
    return NodeRecord(**row, peer_health=health)


def _health_json(peers: tuple[PeerHandshake, ...]) -> str:
    return json.dumps([{"node_id": peer.node_id, "latest_handshake_age": peer.latest_handshake_age}
                       for peer in peers])


# -- reading ----------------------------------------------------------------

def get(node_id: str) -> NodeRecord | None:
    found = dicts(Node.select().where(Node.id == node_id))
    return _record(found[0]) if found else None


def by_token_hash(token_hash: str) -> NodeRecord | None:
    found = dicts(Node.select().where(Node.token_hash == token_hash))
    return _record(found[0]) if found else None


def every() -> list[NodeRecord]:
    return [_record(row) for row in dicts(Node.select())]


def key_taken(public_key: str) -> bool:
    return Node.select().where(Node.public_key == public_key).exists()


def token_known(token_hash: str) -> bool:
    return Node.select().where(Node.token_hash == token_hash).exists()


def ip_taken(mesh_ip: str) -> bool:
    return Node.select().where(Node.mesh_ip == mesh_ip).exists()


def mesh_ips() -> list[str]:
    return [mesh_ip for (mesh_ip,) in rows(Node.select(Node.mesh_ip))]


def offline_among(node_ids: Collection[str]) -> list[str]:
    """Those of `node_ids` that are offline."""
    return [node_id for (node_id,) in rows(Node.select(Node.id).where(Node.id.in_(list(node_ids)) & ~Node.online))]


def online_silent_since(cutoff: float) -> dict[str, float]:
    """Online nodes last seen before `cutoff`: node id -> last seen."""
    return dict(rows(Node.select(Node.id, Node.last_seen).where(Node.online & (Node.last_seen < cutoff))))


def views(node_ids: Collection[str] | None = None) -> dict[str, tuple[NodeView, str]]:
    """node id -> (netmap view, token hash) of every node, or of those in `node_ids`."""
    query = Node.select(*VIEW_COLUMNS)
    if node_ids is not None:
        query = query.where(Node.id.in_(list(node_ids)))
    return {row[0]: (NodeView(*row[:-1]), row[-1]) for row in rows(query)}


# -- writing ----------------------------------------------------------------

def add(node: NodeRecord) -> None:
    Node.insert(id=node.id, name=node.name, public_key=node.public_key, mesh_ip=node.mesh_ip,
                endpoint=node.endpoint, listen_port=node.listen_port, token_hash=node.token_hash,
                created_at=node.created_at, last_seen=node.last_seen, online=node.online,
                applied_revision=node.applied_revision, peer_health=_health_json(node.peer_health),
                changed_revision=node.changed_revision).execute()


def update_registration(node_id: str, changed: dict[str, Any], seen: float, revision: int) -> None:
    """A re-registration that changed the node (`changed` columns) or brought it back online."""
    Node.update(**changed, online=True, last_seen=seen, changed_revision=revision).where(Node.id == node_id).execute()


def touch(node_id: str, seen: float) -> None:
    Node.update(last_seen=seen).where(Node.id == node_id).execute()


def set_online(node_ids: Collection[str], online: bool, revision: int) -> None:
    Node.update(online=online, changed_revision=revision).where(Node.id.in_(list(node_ids))).execute()


def record_heartbeat(node_id: str, report: HeartbeatReport) -> None:
    Node.update(last_seen=report.seen, applied_revision=report.applied_revision,
                peer_health=_health_json(report.peer_health)).where(Node.id == node_id).execute()


def delete(node_id: str) -> bool:
    """Remove the node; False when there was none."""
    return bool(Node.delete().where(Node.id == node_id).execute())
