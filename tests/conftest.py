import pytest

from tests import pg


@pytest.fixture(scope="session")
def pg_admin_url():
    with pg.server() as url:
        yield url


@pytest.fixture
def anyio_backend():
    return "asyncio"
