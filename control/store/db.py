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
# The store itself is down or busy past retries: nothing about the data, worth trying again.
STORE_DOWN = (peewee.OperationalError, peewee.InterfaceError)
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


def retrying(fn: Callable[[], T], attempts: int = 8,
             retry_on: tuple[type[Exception], ...] = (peewee.OperationalError,)) -> T:
    """Run `fn` in a write transaction, retrying deadlocks and lock timeouts with backoff."""
    backoff = Backoff(first=0.01)
    for _ in range(attempts - 1):
        try:
            return _in_write_transaction(fn)
        except retry_on:
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
