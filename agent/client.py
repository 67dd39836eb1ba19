"""The control-plane HTTP client: register, heartbeat, watch, leave; failover across URLs.

Owns error classification: `TemporaryError` (network, timeouts, 5xx: retry,
and move to the next control URL), `Gone` (401: the node or token is no longer
known), `Refused` (other 4xx: retrying the same request will not help).
"""
from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator

import httpx
from httpx_sse import EventSource, SSEError

from meshcommon import keys


class TemporaryError(Exception):
    pass


class Gone(Exception):
    pass


class Refused(Exception):
    pass


def message_of(response: httpx.Response) -> str:
    try:
        return f"{response.status_code}: {response.json().get('message', response.text)}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


class ControlClient:
    def __init__(self, urls: list[str], ca: str | None = None):
        if not urls:
            raise ValueError("at least one control URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.index = 0
        verify = ssl.create_default_context(cafile=ca) if ca else True
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=45.0), verify=verify)

    @property
    def url(self) -> str:
        return self.urls[self.index]

    def fail_over(self) -> None:
        self.index = (self.index + 1) % len(self.urls)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            self.fail_over()
            raise TemporaryError(message_of(response))
        if response.status_code == 401:
            raise Gone(message_of(response))
        if response.status_code >= 400:
            raise Refused(message_of(response))
        return response

    async def request(self, method: str, path: str, token: str, **kwargs) -> dict:
        try:
            response = await self.http.request(method, self.url + path,
                                               headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            failed = self.url
            self.fail_over()
            raise TemporaryError(f"{failed}: {exc!r}") from None
        return self._check(response).json()

    async def register(self, token: str, body: dict, private_key: str) -> dict:
        """Register with proof of key possession: a nonce from /v1/challenge, then the proven body.
        Both go to the same control URL (a failover in between just fails this attempt)."""
        challenge = await self.request("GET", "/v1/challenge", token)
        try:
            proof = keys.prove(private_key, challenge["control_key"], challenge["nonce"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TemporaryError(f"{self.url}: malformed challenge: {exc!r}") from None
        return await self.request("POST", "/v1/register", token,
                                  json={**body, "nonce": challenge["nonce"], "proof": proof})

    async def heartbeat(self, node_id: str, token: str, body: dict) -> dict:
        return await self.request("POST", f"/v1/nodes/{node_id}/heartbeat", token, json=body)

    async def leave(self, node_id: str, token: str) -> dict:
        return await self.request("DELETE", f"/v1/nodes/{node_id}", token)

    async def watch(self, token: str, since: int | None) -> AsyncIterator[dict]:
        """Netmap answers as the control plane streams them (server-sent events)."""
        params = {"stream": "true"}
        if since is not None:
            params["since"] = str(since)
        url = self.url
        try:
            async with self.http.stream("GET", url + "/v1/netmap", params=params,
                                        headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                async for event in EventSource(response).aiter_sse():
                    if not event.data:
                        continue  # a keepalive comment: httpx_sse dispatches it as an empty event
                    if event.event == "error":
                        raise Gone(json.loads(event.data).get("message", event.data))
                    yield json.loads(event.data)
        except (httpx.HTTPError, SSEError) as exc:
            if self.url == url:
                self.fail_over()
            raise TemporaryError(f"{url}: {exc!r}") from None
        except ValueError as exc:
            raise TemporaryError(f"{url}: malformed netmap event: {exc}") from None
        raise TemporaryError(f"{url}: netmap stream ended")

    async def close(self) -> None:
        await self.http.aclose()
