"""Test support for the control plane: a control plane under falcon's ASGI conductor, a fake clock,
and bearer headers. Fixtures that build these are in conftest.py."""
from __future__ import annotations

from dataclasses import dataclass

from falcon import testing

from control.live.runtime import Runtime
from testbed.enrol import PRIVATE, new_key, proven


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def bearer(node: dict) -> dict:
    return {"Authorization": f"Bearer {node['node_token']}"}


@dataclass
class Control:
    """A control plane under falcon's ASGI test conductor, with a fake clock and no sweeper task."""

    client: testing.ASGIConductor
    runtime: Runtime
    clock: FakeClock

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.runtime.auth.admin_token}"}

    async def join_token(self, **body) -> str:
        result = await self.client.simulate_post("/v1/join-tokens", json=body, headers=self.admin)
        assert result.status_code == 201, result.text
        return result.json["token"]

    async def challenge(self, token: str):
        return await self.client.simulate_get("/v1/challenge", headers={"Authorization": f"Bearer {token}"})

    async def register(self, token: str, name: str = "node", key: str | None = None, prove: bool = True,
                       remote_addr: str = "127.0.0.1", user_agent: str | None = None, **extra):
        """Register as an agent does: a challenge first, then the body with its proof (when the
        challenge is granted and the key is one `new_key` made; otherwise the bare body)."""
        body = {"public_key": key or new_key(), "name": name, **extra}
        challenge = await self.challenge(token)
        if prove and challenge.status_code == 200 and body["public_key"] in PRIVATE:
            body = proven(challenge.json, body)
        headers = {"Authorization": f"Bearer {token}", **({"User-Agent": user_agent} if user_agent else {})}
        return await self.client.simulate_post("/v1/register", json=body, remote_addr=remote_addr, headers=headers)

    async def node(self, token: str, name: str = "node", **extra) -> dict:
        result = await self.register(token, name, **extra)
        assert result.status_code == 200, result.text
        return result.json

    async def heartbeat(self, node: dict, remote_addr: str = "127.0.0.1", headers: dict | None = None, **body):
        return await self.client.simulate_post(f"/v1/nodes/{node['node_id']}/heartbeat", json=body,
                                               headers={**bearer(node), **(headers or {})}, remote_addr=remote_addr)

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


class Ids:
    """Node and join-token ids in order: n1, n2, ..."""

    def __init__(self):
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"n{self.count}"
