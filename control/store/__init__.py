"""The store: every query of the control plane's tables, one module per table (named queries).

Owns reading and writing rows: `nodes`, `join_tokens`, `mesh_state` (the one row with the revision,
its lock, bumps and the change-log pruning), `changes` (the change log), `challenges` (nonces and
the control key) and `notify` (PostgreSQL NOTIFY/LISTEN of new revisions). Functions take and
return plain values and `control.rules.records`; they run in the caller's transaction and decide no
rule. Only `control.registry` calls them (checked: the `control-layers` and `control-gateway`
contracts in .importlinter). `db` turns a URL into the database (SQLite or PostgreSQL) and runs
`migrations/`; `models` is the table layout.
"""
from __future__ import annotations

from typing import Any

import peewee


def rows(query: peewee.BaseQuery) -> list[tuple[Any, ...]]:
    """The rows of `query` as tuples (peewee's stubs type a model select's rows as models)."""
    return list(query.tuples().execute())


def dicts(query: peewee.BaseQuery) -> list[dict[str, Any]]:
    """The rows of `query` as dicts of column name to value."""
    return list(query.dicts().execute())
