import os
from dataclasses import dataclass

import pytest
from falcon import testing

from control import config, db
from control.app import create_app
from control.runtime import Runtime
from tests import pg
from tests.enrol import PRIVATE, new_key, proven  # noqa: F401 (new_key: re-exported)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path, pg_admin_url):
    if request.param == "sqlite":
        return db.sqlite_url(tmp_path / "control.db")
    if pg_admin_url is None:
        if os.environ.get("MESHVPN_REQUIRE_PG"):
            pytest.fail("PostgreSQL is required (MESHVPN_REQUIRE_PG) but not installed")
        pytest.skip("PostgreSQL is not installed")
    return pg.fresh_database(pg_admin_url)


@dataclass
class Control:
    """A control plane under falcon's ASGI test conductor, with a fake clock and no sweeper task."""

    client: testing.ASGIConductor
    runtime: Runtime
    clock: FakeClock

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.runtime.admin_token}"}

    async def join_token(self, **body) -> str:
        result = await self.client.simulate_post("/v1/join-tokens", json=body, headers=self.admin)
        assert result.status_code == 201, result.text
        return result.json["token"]

    async def challenge(self, token: str):
        return await self.client.simulate_get("/v1/challenge", headers={"Authorization": f"Bearer {token}"})

    async def register(self, token: str, name: str = "node", key: str | None = None, prove: bool = True,
                       **extra):
        """Register as an agent does: a challenge first, then the body with its proof (when the
        challenge is granted and the key is one `new_key` made; otherwise the bare body)."""
        body = {"public_key": key or new_key(), "name": name, **extra}
        challenge = await self.challenge(token)
        if prove and challenge.status_code == 200 and body["public_key"] in PRIVATE:
            body = proven(challenge.json, body)
        return await self.client.simulate_post("/v1/register", json=body,
                                               headers={"Authorization": f"Bearer {token}"})

    async def node(self, token: str, name: str = "node", **extra) -> dict:
        result = await self.register(token, name, **extra)
        assert result.status_code == 200, result.text
        return result.json

    async def heartbeat(self, node: dict, **body):
        return await self.client.simulate_post(f"/v1/nodes/{node['node_id']}/heartbeat", json=body,
                                               headers=bearer(node))

    async def netmap(self, node: dict, **params):
        return await self.client.simulate_get("/v1/netmap", params=params, headers=bearer(node))

    async def advance(self, seconds: float, step: float = 0.5, beating: tuple = ()) -> None:
        """Move the fake clock, sweeping every `step` like the sweeper task, nodes in `beating` heartbeating."""
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.now += step
            elapsed += step
            for node in beating:
                assert (await self.heartbeat(node)).status_code == 200
            await self.runtime.heartbeats.flush()
            await self.runtime.call(self.runtime.registry.sweep)
            await self.runtime.feed.refresh()


def bearer(node: dict) -> dict:
    return {"Authorization": f"Bearer {node['node_token']}"}


@pytest.fixture
async def control(store_url, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path / "state", db=store_url, cidr="100.64.0.0/24")
    db.connect(cfg.db_url)
    db.migrate()
    clock = FakeClock()
    runtime = Runtime(cfg, clock=clock, sweeper=False)
    async with testing.ASGIConductor(create_app(cfg, runtime)) as client:
        await runtime.call(runtime.registry.sweep)  # as the sweeper task would at start
        yield Control(client, runtime, clock)
    db.db.close()
