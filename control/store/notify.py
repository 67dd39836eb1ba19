"""Announcing new revisions through the store: PostgreSQL NOTIFY, and a LISTEN that wakes a worker.

Owns the channel name and both ends of it. SQLite has no such channel: there every worker polls.
If the listening connection fails the listener stops and logs it; the revision feed's 1 s poll
keeps watchers current until the worker restarts (re-listening is not implemented).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from control import db as database
from control.models import db
from meshcommon.events import emit

CHANNEL = "meshvpn_revision"

log = logging.getLogger(__name__)


def announces() -> bool:
    """Whether committed revisions are announced to other workers and instances (PostgreSQL)."""
    return database.is_postgres()


def announce(revision: int) -> None:
    """Tell every listener of the store that `revision` exists (delivered when the transaction commits)."""
    if announces():
        db.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, str(revision)))


class Listener:
    """LISTEN on the channel of an open connection; every notification calls `kick`."""

    def __init__(self, conn: Any, kick: Callable[[], None]):
        self.conn = conn  # a psycopg2 connection in autocommit mode, already listening
        self.kick = kick
        self.stopped = False

    def readable(self) -> None:
        try:
            self.conn.poll()
        except Exception as exc:
            emit("store_unreachable", reason=f"listen: {exc}")
            self.stop()
            return
        if self.conn.notifies:
            self.conn.notifies.clear()
            self.kick()

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        except Exception:
            log.debug("listener already detached")
        self.conn.close()


def listen(kick: Callable[[], None]) -> Listener | None:
    """A listener calling `kick` (in the running loop) on every announced revision; None on SQLite."""
    if not announces():
        return None
    import psycopg2
    import psycopg2.extensions
    conn = psycopg2.connect(dbname=db.obj.database, **dict(db.obj.connect_params))
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with conn.cursor() as cursor:
        cursor.execute(f"LISTEN {CHANNEL}")
    listener = Listener(conn, kick)
    asyncio.get_running_loop().add_reader(conn.fileno(), listener.readable)
    return listener
