"""Fixtures of the control-plane tests; what they build is in support.py.

`store_url` is a fresh store, on SQLite and (once PostgreSQL is installed) on a real PostgreSQL:
tests that request it, or `control`, run on both. Pure tests request neither and start nothing.
"""

import pytest
from falcon import testing

from control import config
from control.api.app import create_app
from control.live.runtime import Runtime
from control.store import db
from tests.control.support import Control, FakeClock


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return config.sqlite_url(tmp_path / "control.db")
    return request.getfixturevalue("pg_database")  # PostgreSQL starts for the first test that needs it


@pytest.fixture
def store(store_url):
    """A migrated store at `store_url`, the models bound to it; its URL."""
    db.connect(store_url)
    db.migrate()
    yield store_url
    db.db.close()


@pytest.fixture
async def control(store, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path / "state", db=store, cidr="100.64.0.0/24")
    clock = FakeClock()
    runtime = Runtime(cfg, clock=clock, sweeper=False)
    async with testing.ASGIConductor(create_app(cfg, runtime)) as client:
        await runtime.call(runtime.registry.sweep)  # as the sweeper task would at start
        yield Control(client, runtime, clock)
