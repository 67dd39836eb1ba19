import pytest

from testbed import pg

pytest_plugins = ["testbed.meshlab"]  # lab and lab_control fixtures


@pytest.fixture(scope="session")
def pg_admin_url():
    with pg.server() as url:
        yield url


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def structured_logs():
    """Log at INFO as the services do, so every emitted event is really formatted."""
    from meshcommon.plumbing.events import setup_logging
    setup_logging("INFO")
