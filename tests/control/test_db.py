"""The store's connections on a real PostgreSQL: a thread whose connection the server closed (a
restart, a terminated backend) connects again, rather than failing for good."""

import peewee
import psycopg2
import pytest

from control.store import db as database
from control.store.models import db


@pytest.fixture
def pg_url(pg_database):
    database.connect(pg_database)
    yield pg_database
    db.close()


def terminate(url: str, pid: int) -> None:
    """End backend `pid` from another connection, as a restarting server ends every backend."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    conn.close()


def backend_pid() -> int:
    return db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def test_the_statement_after_the_one_that_found_the_connection_gone_gets_a_new_connection(pg_url):
    pid = backend_pid()
    terminate(pg_url, pid)
    with pytest.raises(database.STORE_ERRORS) as failed:  # this one finds out: the store was down for it
        backend_pid()
    assert database.unavailable(failed.value)  # down, not refusing: the same may be tried again
    assert backend_pid() != pid  # and the thread is not stuck with a dead connection


def test_a_transaction_that_finds_the_connection_gone_fails_and_the_next_one_works(pg_url):
    pid = backend_pid()
    terminate(pg_url, pid)
    with pytest.raises(database.STORE_ERRORS):
        database.retrying(backend_pid, attempts=1)
    assert database.retrying(backend_pid, attempts=1) != pid


def test_a_transaction_is_never_moved_to_a_new_connection_halfway(pg_url):
    with pytest.raises(database.STORE_ERRORS), db.atomic():
        terminate(pg_url, backend_pid())
        backend_pid()  # the same transaction: it must fail, not go on elsewhere
    assert not db.in_transaction()
    backend_pid()


def test_sqlite_is_left_as_it_is(tmp_path):
    database.connect(f"sqlite:///{tmp_path / 'control.db'}")
    try:
        assert isinstance(db.obj, peewee.SqliteDatabase)
    finally:
        db.close()


class PgError(Exception):
    def __init__(self, pgcode: str | None):
        super().__init__(f"SQLSTATE {pgcode}")
        self.pgcode = pgcode


def raised(error: Exception, cause: BaseException | None = None) -> Exception:
    try:
        raise error from cause
    except Exception as exc:
        return exc


@pytest.mark.parametrize("error, down", [
    (raised(peewee.OperationalError("database is locked")), True),
    (raised(peewee.OperationalError("disk I/O error")), True),
    (raised(peewee.OperationalError("attempt to write a readonly database")), True),
    (raised(peewee.OperationalError("database or disk is full")), False),
    (raised(peewee.OperationalError("string or blob too big")), False),
    (raised(peewee.InterfaceError("connection already closed")), True),
    (raised(peewee.OperationalError("server closed the connection unexpectedly"), PgError(None)), True),
    (raised(peewee.OperationalError("terminating connection"), PgError("57P01")), True),
    (raised(peewee.OperationalError("could not connect"), PgError("08006")), True),
    (raised(peewee.OperationalError("deadlock detected"), PgError("40P01")), True),
    (raised(peewee.OperationalError("too many connections"), PgError("53300")), True),
    (raised(peewee.OperationalError("could not extend file: No space left on device"), PgError("53100")), False),
    (raised(peewee.OperationalError("out of memory"), PgError("53200")), False),
    (raised(peewee.IntegrityError("UNIQUE constraint failed")), False),
    (raised(OverflowError("Python int too large to convert to SQLite INTEGER")), False)])
def test_only_a_store_that_is_down_or_busy_is_unavailable_not_one_that_refuses_the_write(error, down):
    assert database.unavailable(error) is down
