"""The mesh-state row (id 1): the membership revision, its lock, and the change log's horizon.

Owns the SQL of the `mesh_state` table and the revision bump: a bump advances the revision once,
logs which nodes changed (`changes`), prunes the log every `PRUNE_EVERY` revisions to the last
`CHANGE_LOG_KEEP`, and announces the revision (`notify`). Callers bump while holding `lock()`.
"""
from __future__ import annotations

from collections.abc import Iterable

from control.rules.records import StateRecord
from control.store import changes, notify
from control.store import db as database
from control.store.models import MeshState

CHANGE_LOG_KEEP = 5000  # revisions of change log kept for deltas
PRUNE_EVERY = 500  # revisions between prunes
THE_ROW = MeshState.id == 1


def _record(row: MeshState) -> StateRecord:
    return StateRecord(row.revision, row.horizon, row.last_ip, row.last_sweep_at, row.grace_until)


def read() -> StateRecord:
    return _record(MeshState.select().where(THE_ROW).get())


def lock() -> StateRecord:
    """Read the row and hold its lock to the end of the transaction (PostgreSQL; SQLite's write
    transactions hold the whole database already), so revision bumps serialize everywhere."""
    query = MeshState.select().where(THE_ROW)
    if database.is_postgres():
        query = query.for_update()
    return _record(query.get())


def revision() -> int:
    return MeshState.select(MeshState.revision).where(THE_ROW).scalar()


def bump(node_ids: Iterable[str]) -> int:
    """Advance the revision once and log which nodes changed. Caller holds the lock."""
    MeshState.update(revision=MeshState.revision + 1).where(THE_ROW).execute()
    reached = revision()
    changes.add(reached, node_ids)
    if reached % PRUNE_EVERY == 0:
        prune(reached)
    notify.announce(reached)
    return reached


def prune(reached: int) -> None:
    """Keep the change log of the last CHANGE_LOG_KEEP revisions; deltas from before are full maps."""
    horizon = reached - CHANGE_LOG_KEEP
    if horizon > 0:
        changes.drop_through(horizon)
        MeshState.update(horizon=horizon).where(THE_ROW).execute()


def set_last_ip(mesh_ip: str) -> None:
    MeshState.update(last_ip=mesh_ip).where(THE_ROW).execute()


def record_sweep(now: float, grace_until: float) -> None:
    MeshState.update(last_sweep_at=now, grace_until=grace_until).where(THE_ROW).execute()
