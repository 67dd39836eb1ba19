import os

import pytest

from testbed import pg

pytest_plugins = ["testbed.meshlab"]  # lab and lab_control fixtures


@pytest.fixture(scope="session")
def pg_admin_url():
    with pg.server() as url:
        yield url


@pytest.fixture
def pg_database(pg_admin_url):
    """The URL of a fresh database on the test PostgreSQL server (skipped where none is installed,
    failed when MESHVPN_REQUIRE_PG says it must run)."""
    if pg_admin_url is None:
        if os.environ.get("MESHVPN_REQUIRE_PG"):
            pytest.fail("PostgreSQL is required (MESHVPN_REQUIRE_PG) but not installed")
        pytest.skip("PostgreSQL is not installed")
    return pg.fresh_database(pg_admin_url)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def structured_logs():
    """Log at INFO as the services do, so every emitted event is really formatted."""
    from meshcommon.plumbing.events import setup_logging
    setup_logging("INFO")
