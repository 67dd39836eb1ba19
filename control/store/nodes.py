"""Nodes: the SQL of the `node` table.

Owns how a node is read and written: its netmap view (the cache's source), its record, its
liveness columns, its reflexive endpoint and the tunnels its agent reports down (JSON text).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping
from typing import Any

from control.rules.records import HeartbeatReport, NodeRecord, TunnelDown
from control.store import dicts, rows
from control.store.models import Node
from meshcommon.contract.wire import NodeView

HEARTBEAT_ROWS = 1000  # nodes per heartbeat statement: 4,000 variables, far below SQLite's 32,766
# The columns of a NodeView, in its field order, then the token hash the cache authenticates with.
VIEW_COLUMNS = (Node.id, Node.name, Node.mesh_ip, Node.public_key, Node.endpoint, Node.listen_port, Node.online,
                Node.reflexive_endpoint, Node.token_hash)


def _record(row: dict[str, Any]) -> NodeRecord:
    down = tuple(TunnelDown(item["node_id"], item["since"], item["reason"])
                 for item in json.loads(row.pop("tunnels_down")))
    return NodeRecord(**row, tunnels_down=down)


def _down_json(down: tuple[TunnelDown, ...]) -> str:
    return json.dumps([{"node_id": item.node_id, "since": item.since, "reason": item.reason} for item in down])


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


def online_count() -> int:
    return Node.select().where(Node.online).count()


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
                applied_revision=node.applied_revision, changed_revision=node.changed_revision,
                reflexive_endpoint=node.reflexive_endpoint, tunnels_down=_down_json(node.tunnels_down),
                agent_version=node.agent_version).execute()


def set_agent_version(node_id: str, version: str | None) -> None:
    Node.update(agent_version=version).where(Node.id == node_id).execute()


def update_registration(node_id: str, changed: dict[str, Any], seen: float, revision: int) -> None:
    """A re-registration that changed the node (`changed` columns) or brought it back online."""
    Node.update(**changed, online=True, last_seen=seen, changed_revision=revision).where(Node.id == node_id).execute()


def rename(node_id: str, name: str, revision: int) -> None:
    """An admin's rename: the name stays through the node's re-registrations (pinned)."""
    Node.update(name=name, name_pinned=True, changed_revision=revision).where(Node.id == node_id).execute()


def touch(node_id: str, seen: float) -> None:
    Node.update(last_seen=seen).where(Node.id == node_id).execute()


def set_online(node_ids: Collection[str], online: bool, revision: int) -> None:
    Node.update(online=online, changed_revision=revision).where(Node.id.in_(list(node_ids))).execute()


def record_heartbeats(batch: Mapping[str, HeartbeatReport]) -> None:
    """Liveness and applied revision of each node of `batch`; its tunnels down only when its report
    has them (else unchanged). One statement per HEARTBEAT_ROWS nodes, not one per node, and its
    text written here rather than built by peewee node by node: in a store thread every statement,
    and every bit of Python, waits for the interpreter lock, which the busy event loop holds for
    up to a switch interval (5 ms) at a time (500 statements a batch took seconds)."""
    items = sorted(batch.items())
    for start in range(0, len(items), HEARTBEAT_ROWS):
        chunk = items[start:start + HEARTBEAT_ROWS]
        params: list[Any] = []
        for node_id, report in chunk:
            down = None if report.tunnels_down is None else _down_json(report.tunnels_down)
            params += (node_id, report.seen, report.applied_revision, down)
        Node._meta.database.execute_sql(_heartbeats_sql(len(chunk), Node._meta.database.param), params)


@functools.lru_cache(maxsize=16)
def _heartbeats_sql(count: int, param: str) -> str:
    # Casts: PostgreSQL types a VALUES column from its literals, and one of NULLs only as text.
    # UPDATE ... FROM: SQLite 3.33 and later, PostgreSQL.
    row = "(" + ", ".join([param] * 4) + ")"
    return (f"WITH reported (id, seen, applied, down) AS (VALUES {', '.join([row] * count)}) "
            "UPDATE node SET last_seen = CAST(reported.seen AS DOUBLE PRECISION), "
            "applied_revision = CAST(reported.applied AS BIGINT), "
            "tunnels_down = COALESCE(CAST(reported.down AS TEXT), node.tunnels_down) "
            "FROM reported WHERE node.id = reported.id")


def liveness(node_ids: Collection[str]) -> dict[str, tuple[bool, str | None]]:
    """node id -> (online, reflexive endpoint) as stored, of those of `node_ids` that exist; in
    statements written here, like `record_heartbeats`, for every heartbeat batch."""
    found: dict[str, tuple[bool, str | None]] = {}
    ids = sorted(node_ids)
    database = Node._meta.database
    for start in range(0, len(ids), HEARTBEAT_ROWS):
        chunk = ids[start:start + HEARTBEAT_ROWS]
        marks = ", ".join([database.param] * len(chunk))
        cursor = database.execute_sql(f"SELECT id, online, reflexive_endpoint FROM node WHERE id IN ({marks})", chunk)
        found.update((node_id, (bool(online), reflexive)) for node_id, online, reflexive in cursor.fetchall())
    return found


def reflexive_endpoints(node_ids: Collection[str]) -> dict[str, str | None]:
    """node id -> reflexive endpoint as stored, of those of `node_ids` that exist."""
    return dict(rows(Node.select(Node.id, Node.reflexive_endpoint).where(Node.id.in_(list(node_ids)))))


def set_reflexive(node_id: str, reflexive_endpoint: str | None, revision: int) -> None:
    Node.update(reflexive_endpoint=reflexive_endpoint, changed_revision=revision).where(Node.id == node_id).execute()


def delete(node_id: str) -> bool:
    """Remove the node; False when there was none."""
    return bool(Node.delete().where(Node.id == node_id).execute())
