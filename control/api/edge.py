"""The edge of a request: the bearer token, the body, the long-poll parameters.

Owns reading what a client sent: a body of at most `max_body` bytes, read within `body_timeout`
seconds and decoded into its schema (`schemas.py`), then turned into the plain arguments the
registry takes (`records.py`), so no HTTP schema goes further; and `since`/`wait` with their
bounds. Every refusal is a domain error, mapped to a JSON answer once, by the app.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, TypeVar

from control.api import schemas
from control.rules import reflexive
from control.rules.errors import BodyTooLarge, InvalidRequest, RequestTimeout
from control.rules.records import HeartbeatSent, JoinTokenRequest, Registration, ReportedDown, agent_version
from meshcommon.contract.addresses import Network

S = TypeVar("S")
# Bodies that are small by nature get a small limit: a registration is read before its join token
# is checked against the store, and no one may make a worker hold a megabyte per connection for it.
SMALL_BODIES: dict[type, int] = {schemas.RegisterBody: 4096, schemas.JoinTokenCreateBody: 4096}


def bearer(req: Any) -> str | None:
    header = req.get_header("Authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class BodyReader:
    def __init__(self, max_body: int, body_timeout: float):
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def read(self, req: Any, schema: type[S]) -> S:
        """The request body decoded into `schema`: at most `max_body` bytes (less for the small
        bodies of `SMALL_BODIES`), read within `body_timeout` seconds."""
        limit = min(self.max_body, SMALL_BODIES.get(schema, self.max_body))
        if req.content_length is not None and req.content_length > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        try:
            async with asyncio.timeout(self.body_timeout):  # a client that stops mid-body must not hold a request
                data = await req.stream.read(limit + 1)
        except TimeoutError:
            raise RequestTimeout(f"request body not received within {self.body_timeout:g} s") from None
        if len(data) > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        try:
            return schemas.decode(data or b"{}", schema)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None


def wait_params(req: Any) -> tuple[int | None, float]:
    """`since` (or an ETag "rREV") and `wait`, bounded: a revision past 2^53 or a NaN wait is a 400."""
    since = req.get_param_as_int("since", min_value=0, max_value=schemas.MAX_REVISION)
    wait = req.get_param_as_float("wait", min_value=0, max_value=schemas.MAX_AGE, default=0.0)
    if not math.isfinite(wait):
        raise InvalidRequest("wait must be a finite number of seconds")
    etag = req.get_header("If-None-Match")
    if since is None and etag:
        tag = etag.strip().removeprefix("W/").strip('"')
        number = tag[1:]
        if tag.startswith("r") and number.isascii() and number.isdigit() and len(number) < 17:
            since = min(int(number), schemas.MAX_REVISION)
    return since, wait


class Source:
    """Where a request came from: the connection's peer, or behind a trusted proxy what it forwarded."""

    def __init__(self, trusted_proxies: tuple[Network, ...]):
        self.trusted = trusted_proxies

    def address(self, req: Any) -> str | None:
        forwarded = req.get_header("X-Forwarded-For") if self.trusted else None
        return reflexive.client_address(req.remote_addr, forwarded, self.trusted)


# -- from schema to plain arguments ----------------------------------------------

def registration(body: schemas.RegisterBody, source_address: str | None, mesh_prefix: Network,
                 user_agent: str | None = None) -> Registration:
    return Registration(public_key=body.public_key, name=body.name, listen_port=body.listen_port,
                        endpoint=body.endpoint, nonce=body.nonce, proof=body.proof,
                        agent_version=agent_version(user_agent),
                        reflexive_endpoint=reflexive.reflexive_endpoint(source_address, body.listen_port,
                                                                         mesh_prefix))


async def read_heartbeat(req: Any, body: BodyReader, source: Source) -> HeartbeatSent:
    """A heartbeat's body and the address it came from, as one report in plain data."""
    beat = await body.read(req, schemas.HeartbeatBody)
    down = None if beat.tunnels_down is None else \
        tuple(ReportedDown(d.node_id, d.down_for, d.reason) for d in beat.tunnels_down)
    return HeartbeatSent(beat.applied_revision, source.address(req), down)


def join_token_request(body: schemas.JoinTokenCreateBody) -> JoinTokenRequest:
    return JoinTokenRequest(reusable=body.reusable, ttl_seconds=body.ttl_seconds, description=body.description)
