"""The change log: which nodes changed at which revision, the source of every netmap delta.

Owns the SQL of the `change` table. Rows are kept in (revision, node id) order when read.
"""
from __future__ import annotations

from collections.abc import Iterable

from control.store import rows
from control.store.models import Change


def add(revision: int, node_ids: Iterable[str]) -> None:
    Change.insert_many([{"revision": revision, "node_id": node_id} for node_id in node_ids]).execute()


def drop_through(revision: int) -> None:
    """Forget every change at or before `revision` (deltas from there on become full maps)."""
    Change.delete().where(Change.revision <= revision).execute()


def between(after: int | None, through: int) -> list[tuple[int, str]]:
    """(revision, node id) of every change after `after` (all when None) up to `through`, in order."""
    where = Change.revision <= through
    if after is not None:
        where = (Change.revision > after) & where
    query = Change.select(Change.revision, Change.node_id).where(where).order_by(Change.revision, Change.node_id)
    return [(revision, node_id) for revision, node_id in rows(query)]
