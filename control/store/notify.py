"""Announcing new revisions through the store: PostgreSQL NOTIFY, and a LISTEN that wakes a worker.

Owns the channel name and both ends of it. SQLite has no such channel: there every worker polls.
If the listening connection fails, the listener logs it and connects again (about 1 s, doubling to
30 s, jittered, in a thread: never blocking the event loop) and kicks once when it is back, for what it
missed; meanwhile the revision feed's 1 s poll keeps watchers current.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from control.store import db as database
from control.store.models import db
from meshcommon.plumbing.backoff import Backoff
from meshcommon.plumbing.events import emit

CHANNEL = "meshvpn_revision"

log = logging.getLogger(__name__)


def announces() -> bool:
    """Whether committed revisions are announced to other workers and instances (PostgreSQL)."""
    return database.is_postgres()


def announce(revision: int) -> None:
    """Tell every listener of the store that `revision` exists (delivered when the transaction commits)."""
    if announces():
        db.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, str(revision)))


RETRY_CAP = 30.0  # seconds between attempts to listen again, at most


class Listener:
    """LISTEN on the channel; every notification calls `kick`. Re-listens after a failure."""

    def __init__(self, connect: Callable[[], Any], kick: Callable[[], None]):
        self.connect = connect  # blocking: a psycopg2 connection in autocommit mode, already listening
        self.kick = kick
        self.loop = asyncio.get_running_loop()
        self.conn: Any = None
        self.fd: int | None = None  # the connection's socket, as registered (a closed connection has none)
        self.stopped = False
        self.backoff = Backoff(first=1.0)
        self.retry: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None

    def attach(self, conn: Any) -> None:
        self.conn, self.fd = conn, conn.fileno()
        self.loop.add_reader(self.fd, self.readable)

    def readable(self) -> None:
        try:
            self.conn.poll()
        except Exception as exc:
            emit("store_unreachable", reason=f"listen: {exc}")
            self.detach()
            self.again()
            return
        if self.conn.notifies:
            self.conn.notifies.clear()
            self.kick()

    def detach(self) -> None:
        if self.conn is None:
            return
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            self.fd = None
        try:
            self.conn.close()
        except Exception:
            log.debug("listener connection already closed")
        self.conn = None

    def again(self) -> None:
        """Try to listen again after a backoff."""
        if self.stopped:
            return
        self.retry = self.loop.call_later(self.backoff.next(RETRY_CAP), self._start_reconnect)

    def _start_reconnect(self) -> None:
        self.retry = None
        self.task = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            conn = await asyncio.to_thread(self.connect)
        except Exception as exc:
            log.debug("listen again failed: %s", exc)
            self.again()
            return
        if self.stopped:
            conn.close()
            return
        self.attach(conn)
        self.backoff.reset()
        emit("store_restored", reason="listen")
        self.kick()  # whatever was announced while we were not listening

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.retry is not None:
            self.retry.cancel()
        if self.task is not None:
            self.task.cancel()
        self.detach()


def listening_connection() -> Any:
    """A new autocommit connection to the store that LISTENs on the channel (blocking)."""
    import psycopg2
    import psycopg2.extensions
    params = {"connect_timeout": 5, **db.obj.connect_params}  # a store that is down must not hang us long
    conn = psycopg2.connect(dbname=db.obj.database, **params)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with conn.cursor() as cursor:
        cursor.execute(f"LISTEN {CHANNEL}")
    return conn


def listen(kick: Callable[[], None]) -> Listener | None:
    """A listener calling `kick` (in the running loop) on every announced revision; None on SQLite."""
    if not announces():
        return None
    listener = Listener(listening_connection, kick)
    listener.attach(listening_connection())
    return listener
