"""Database connection, transactions and migrations for SQLite and PostgreSQL alike.

Owns turning a URL into a peewee Database bound to `models.db` (on PostgreSQL, one that connects
again after the server closed a connection), the transaction flavour each backend needs (with
retries of lock timeouts and deadlocks), which database errors mean "the store is down" and which
"a unique constraint said no", and applying numbered migrations.
Knows no table but through `models`; the SQL of each table is in `store/`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import peewee
from playhouse import db_url
from playhouse.migrations import Runner

from control.store.models import db
from meshcommon.plumbing.backoff import Backoff

T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 10000, "synchronous": "normal",
                  "foreign_keys": 1}
# PostgreSQL's single-int advisory lock key for "migrations in progress".
MIGRATION_LOCK = 0x6D657368
# What the store can fail with besides a refused constraint: down, busy, or refusing the write.
STORE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)
# PostgreSQL's SQLSTATE classes that mean the server, not the data: connection exception, operator
# intervention (shutdown), transaction rollback (serialization, deadlock), object not in
# prerequisite state (lock not available); and too many connections.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57", "40", "55")
UNAVAILABLE_SQLSTATES = ("53300",)
# SQLite's words for a write the store refuses (not for being down or busy): full, or too large.
REFUSED_SQLITE = ("full", "too big")
SQLITE_FULL, SQLITE_TOOBIG = 13, 18  # sqlite3's error codes for them, where the driver gives one


def full(exc: BaseException) -> bool:
    """Whether a write failed for want of space (PostgreSQL's disk_full, SQLite's SQLITE_FULL)."""
    cause = exc.__cause__ or exc.__context__
    return (getattr(cause, "pgcode", None) == "53100" or getattr(cause, "sqlite_errorcode", None) == SQLITE_FULL
            or (isinstance(exc, peewee.OperationalError) and "full" in str(exc).lower()))


def unavailable(exc: BaseException) -> bool:
    """Whether a failed statement means the store is down or busy (the same write may succeed
    later) rather than that it refused this write (disk full, a value too large: a smaller write
    may succeed now). PostgreSQL says so by SQLSTATE (disk full is class 53); SQLite in words."""
    if isinstance(exc, peewee.InterfaceError):
        return True
    if not isinstance(exc, peewee.OperationalError):
        return False
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "pgcode", None)
    if code:
        return code[:2] in UNAVAILABLE_SQLSTATE_CLASSES or code in UNAVAILABLE_SQLSTATES
    if getattr(cause, "sqlite_errorcode", None) in (SQLITE_FULL, SQLITE_TOOBIG):
        return False
    return not any(words in str(exc).lower() for words in REFUSED_SQLITE)
# A unique constraint refused a write: another writer took the value first.
Conflict = peewee.IntegrityError


class PostgresqlDatabase(peewee.PostgresqlDatabase):
    """PostgreSQL whose threads connect again when the server closed their connection (it
    restarted, or ended the backend). The statement that finds the connection gone fails, as it
    must (the store was down for it); the thread's next statement outside a transaction gets a new
    connection, where peewee alone would keep the dead one, and fail, for good."""

    def cursor(self, named_cursor=None):
        if not self.in_transaction() and not self.is_closed() and self.connection().closed:
            self.close()  # closing a closed connection is a no-op; peewee forgets it and reconnects
        return super().cursor(named_cursor)


def connect(url: str) -> peewee.Database:
    """Open (lazily) the database at `url` and bind the models to it."""
    if url.startswith("sqlite"):
        database = db_url.connect(url, pragmas=SQLITE_PRAGMAS)
    elif url.startswith(("postgres://", "postgresql://")):
        database = PostgresqlDatabase(**db_url.parse(url))
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    db.initialize(database)
    return database


def is_postgres() -> bool:
    return isinstance(db.obj, peewee.PostgresqlDatabase)


def read_transaction() -> AbstractContextManager:
    """One consistent read of several tables."""
    return db.atomic()


def write_transaction() -> AbstractContextManager:
    """A transaction that takes the write lock up front (SQLite) so it never fails midway on upgrade."""
    if isinstance(db.obj, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


# SQLite has one writer at a time; threads of one process that wait for it inside SQLite's busy
# handler sleep in coarse steps and convoy. Queueing them here instead keeps writes back to back.
_sqlite_writer = threading.Lock()
RETRY_CAP = 1.0  # seconds between attempts of a write transaction, at most


def retrying(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run `fn` in a write transaction, retrying with backoff while the store is busy or down
    (deadlocks, lock timeouts, a lost connection); a write it refuses is the caller's at once."""
    backoff = Backoff(first=0.01)
    for _ in range(attempts - 1):
        try:
            return _in_write_transaction(fn)
        except STORE_ERRORS as exc:
            if not unavailable(exc):
                raise
            time.sleep(backoff.next(RETRY_CAP))
    return _in_write_transaction(fn)  # the last attempt: its error is the caller's


def _in_write_transaction(fn: Callable[[], T]) -> T:
    if isinstance(db.obj, peewee.SqliteDatabase):
        with _sqlite_writer, write_transaction():
            return fn()
    with write_transaction():
        return fn()


@contextmanager
def migration_lock() -> Iterator[None]:
    if is_postgres():
        db.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    else:
        yield


def migrate() -> list[str]:
    """Apply pending migrations; safe to run from several instances at once."""
    with migration_lock():
        return Runner(db.obj, str(MIGRATIONS)).up()
