"""The store's revision channel on a real PostgreSQL: a listener that loses its connection listens again."""
import asyncio
import time

import psycopg2
import pytest

from control.store import db as database
from control.store import notify
from control.store.models import db

pytestmark = pytest.mark.anyio


@pytest.fixture
def pg_store(pg_database):
    """A migrated PostgreSQL store (the channel is PostgreSQL's; SQLite workers poll)."""
    database.connect(pg_database)
    database.migrate()
    yield pg_database
    database.db.close()


async def eventually(predicate, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def announce(url: str, revision: int) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", (notify.CHANNEL, str(revision)))
    conn.close()


async def test_a_listener_whose_connection_is_killed_listens_again_and_catches_up(pg_store):
    kicks = []
    listener = notify.listen(lambda: kicks.append(time.monotonic()))
    try:
        announce(pg_store, 1)
        assert await eventually(lambda: len(kicks) == 1, 5)
        pid = listener.conn.get_backend_pid()
        db.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))  # the store drops the listening connection
        assert await eventually(lambda: listener.conn is not None and listener.conn.get_backend_pid() != pid, 10)
        assert len(kicks) == 2  # one kick on return, for whatever was missed
        announce(pg_store, 2)
        assert await eventually(lambda: len(kicks) == 3, 5)
    finally:
        listener.stop()
