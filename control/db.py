"""Database connection, transactions and migrations for SQLite and PostgreSQL alike.

Owns turning a URL into a peewee Database bound to `models.db`, the write
transaction flavour each backend needs, and applying numbered migrations.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import peewee
from playhouse import db_url
from playhouse.migrations import Runner

from control.models import db

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 10000, "synchronous": "normal",
                  "foreign_keys": 1}
# PostgreSQL's single-int advisory lock key for "migrations in progress".
MIGRATION_LOCK = 0x6D657368


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def connect(url: str) -> peewee.Database:
    """Open (lazily) the database at `url` and bind the models to it."""
    if url.startswith("sqlite"):
        database = db_url.connect(url, pragmas=SQLITE_PRAGMAS)
    elif url.startswith(("postgres://", "postgresql://")):
        database = db_url.connect(url)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    db.initialize(database)
    return database


def is_postgres() -> bool:
    return isinstance(db.obj, peewee.PostgresqlDatabase)


def write_transaction():
    """A transaction that takes the write lock up front (SQLite) so it never fails midway on upgrade."""
    if isinstance(db.obj, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


# SQLite has one writer at a time; threads of one process that wait for it inside SQLite's busy
# handler sleep in coarse steps and convoy. Queueing them here instead keeps writes back to back.
_sqlite_writer = threading.Lock()


def retrying(fn, attempts: int = 8, retry_on=(peewee.OperationalError,)):
    """Run `fn` in a write transaction, retrying deadlocks and lock timeouts with backoff."""
    for attempt in range(attempts):
        try:
            if isinstance(db.obj, peewee.SqliteDatabase):
                with _sqlite_writer, write_transaction():
                    return fn()
            with write_transaction():
                return fn()
        except retry_on:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * 2 ** attempt)


@contextmanager
def migration_lock():
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
