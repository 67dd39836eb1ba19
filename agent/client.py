"""The control-plane HTTP client: register, heartbeat, watch, leave; failover across URLs.

Owns the requests and the reading of their answers through `meshcommon.contract.wire` (`ChallengeAnswer`,
`Registered`, `HeartbeatAnswer`, netmap answers with their peer entries left raw for `intake`), and
error classification: `TemporaryError` (network, timeouts, 5xx, an answer that does not fit the
contract: retry, and on a failed connection or 5xx move to the next control URL), `Gone` (401: the
node or token is no longer known), `Refused` (other 4xx: retrying the same request will not help).
Must not decide when to retry: the session does.
"""
from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator
from typing import TypeVar

import httpx
import msgspec
from httpx_sse import EventSource, SSEError

from meshcommon.contract import keys, wire
from meshcommon.contract.version import VERSION

Answer = TypeVar("Answer")


class TemporaryError(Exception):
    pass


class Gone(Exception):
    pass


class Refused(Exception):
    pass


class _Problem(msgspec.Struct):
    error: str | None = None
    message: str | None = None


def message_of(status: int, body: bytes) -> str:
    try:
        message = msgspec.json.decode(body, type=_Problem).message
    except msgspec.DecodeError:
        message = None
    return f"{status}: {message if message is not None else body[:200].decode(errors='replace')}"


class ControlClient:
    def __init__(self, urls: list[str], ca: str | None = None, transport: httpx.AsyncBaseTransport | None = None):
        if not urls:
            raise ValueError("at least one control URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.index = 0
        verify = ssl.create_default_context(cafile=ca) if ca else True
        # The User-Agent names this agent's version: the control plane keeps it for `meshctl nodes`.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=45.0), verify=verify, transport=transport,
                                      headers={"User-Agent": f"meshagent/{VERSION}"})

    @property
    def url(self) -> str:
        return self.urls[self.index]

    def fail_over(self) -> None:
        self.index = (self.index + 1) % len(self.urls)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            self.fail_over()
            raise TemporaryError(message_of(response.status_code, response.content))
        if response.status_code == 401:
            raise Gone(message_of(response.status_code, response.content))
        if response.status_code >= 400:
            raise Refused(message_of(response.status_code, response.content))
        return response

    async def _send(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        try:
            response = await self.http.request(method, self.url + path,
                                               headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            failed = self.url
            self.fail_over()
            raise TemporaryError(f"{failed}: {exc!r}") from None
        return self._check(response)

    async def _ask(self, method: str, path: str, token: str, answer: type[Answer], **kwargs) -> Answer:
        url = self.url
        response = await self._send(method, path, token, **kwargs)
        try:
            return msgspec.json.decode(response.content, type=answer)
        except msgspec.DecodeError as exc:
            raise TemporaryError(f"{url}: malformed answer to {method} {path}: {exc}") from None

    async def register(self, token: str, body: dict, private_key: str) -> wire.Registered:
        """Register with proof of key possession: a nonce from /v1/challenge, then the proven body.
        Both go to the same control URL (a failover in between just fails this attempt)."""
        challenge = await self._ask("GET", "/v1/challenge", token, wire.ChallengeAnswer)
        try:
            proof = keys.prove(private_key, challenge.control_key, challenge.nonce)
        except ValueError as exc:
            raise TemporaryError(f"{self.url}: malformed challenge: {exc!r}") from None
        return await self._ask("POST", "/v1/register", token, wire.Registered,
                               json={**body, "nonce": challenge.nonce, "proof": proof})

    async def heartbeat(self, node_id: str, token: str, body: dict,
                        timeout: float | None = None) -> wire.HeartbeatAnswer:
        """`timeout`: seconds each phase of the request may take (default: the client's), so that a
        control plane that went silent (a lost host resets nothing) costs one short failed heartbeat."""
        limit = {} if timeout is None else {"timeout": timeout}
        return await self._ask("POST", f"/v1/nodes/{node_id}/heartbeat", token, wire.HeartbeatAnswer,
                               json=body, **limit)

    async def leave(self, node_id: str, token: str) -> None:
        await self._send("DELETE", f"/v1/nodes/{node_id}", token)

    async def watch(self, token: str, since: int | None) -> AsyncGenerator[
            wire.FullNetmap[msgspec.Raw] | wire.DeltaNetmap[msgspec.Raw], None]:
        """Netmap answers as the control plane streams them (server-sent events); ends with TemporaryError."""
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
                    data = event.data.encode()
                    if event.event == "error":
                        problem = msgspec.json.decode(data, type=_Problem)
                        said = problem.message or event.data
                        # Only a node that is no longer known is gone; any other refusal (too many
                        # streams open, say) is worth trying again after a backoff.
                        if problem.error in (None, "unauthorized"):
                            raise Gone(said)
                        raise TemporaryError(f"{url}: {said}")
                    yield wire.decode_netmap_entries(data)
        except (httpx.HTTPError, SSEError) as exc:
            if self.url == url:
                self.fail_over()
            raise TemporaryError(f"{url}: {exc!r}") from None
        except msgspec.DecodeError as exc:
            raise TemporaryError(f"{url}: malformed netmap event: {exc}") from None
        raise TemporaryError(f"{url}: netmap stream ended")

    async def close(self) -> None:
        await self.http.aclose()
