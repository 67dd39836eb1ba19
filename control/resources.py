"""HTTP resources: thin responders that parse, authenticate and call the runtime.

Owns the mapping of routes to runtime calls. No business rules and no SQL here;
errors are raised as domain errors and turned into JSON by the app.
"""
from __future__ import annotations

import asyncio
import math

import falcon

from control import schemas, tokens
from control.config import Config
from control.errors import BodyTooLarge, InvalidRequest, RequestTimeout, Unauthorized
from control.metrics import NETMAPS, exposition
from control.runtime import Runtime


def bearer(req) -> str | None:
    header = req.get_header("Authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def body(req, schema, config: Config):
    """The request body decoded into `schema`: at most `max_body` bytes, read within `body_timeout` seconds."""
    limit = config.max_body
    if req.content_length is not None and req.content_length > limit:
        raise BodyTooLarge(f"request body over {limit} bytes")
    try:
        async with asyncio.timeout(config.body_timeout):  # a client that stops mid-body must not hold a request
            data = await req.stream.read(limit + 1)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {config.body_timeout:g} s") from None
    if len(data) > limit:
        raise BodyTooLarge(f"request body over {limit} bytes")
    try:
        return schemas.decode(data or b"{}", schema)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def wait_params(req) -> tuple[int | None, float]:
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


def answer(resp, media: dict | None, revision: int) -> None:
    resp.etag = f'"r{revision}"'
    if media is None:
        resp.status = falcon.HTTP_304
    else:
        resp.media = media


class Resource:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime


class Health(Resource):
    async def on_get(self, req, resp):
        revision = await self.runtime.call(self.runtime.registry.current_revision)
        resp.media = {"status": "ok", "revision": revision, "loaded_revision": self.runtime.cache.revision}


class Metrics(Resource):
    async def on_get(self, req, resp):
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = exposition(self.runtime)


class OpenAPI(Resource):
    def __init__(self, runtime: Runtime, spec: dict):
        super().__init__(runtime)
        self.spec = spec

    async def on_get(self, req, resp):
        resp.media = self.spec


class Challenge(Resource):
    async def on_get(self, req, resp):
        token = bearer(req)
        if token is None:
            raise Unauthorized("join token or node token required")
        resp.media = await self.runtime.call(self.runtime.registry.challenge, token)


class Register(Resource):
    async def on_post(self, req, resp):
        request = await body(req, schemas.Register, self.runtime.config)
        token = bearer(req)
        if token is None:
            raise Unauthorized("join token or node token required")
        resp.media = await self.runtime.write(self.runtime.registry.register, token, request)


class Heartbeat(Resource):
    async def on_post(self, req, resp, node_id):
        node_id = await self.runtime.own_node(bearer(req), node_id)
        beat = await body(req, schemas.Heartbeat, self.runtime.config)
        resp.media = await self.runtime.heartbeat(node_id, beat)


class Netmap(Resource):
    async def on_get(self, req, resp):
        node_id = await self.runtime.node_for(bearer(req))
        since, wait = wait_params(req)
        if req.get_param_as_bool("stream", default=False):
            resp.sse = self.runtime.netmap_stream(node_id, since)
            return
        found = await self.runtime.netmap(node_id, since, wait)
        NETMAPS.labels("not_modified" if found is None else found[0]).inc()
        resp.etag = f'"r{self.runtime.cache.revision}"'
        if found is None:
            resp.status = falcon.HTTP_304
        else:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = found[1]


class Nodes(Resource):
    async def on_get(self, req, resp):
        self.runtime.check_admin(bearer(req))
        since, wait = wait_params(req)
        media = await self.runtime.nodes(since, wait)
        answer(resp, media, media["revision"] if media else self.runtime.cache.revision)


class Node(Resource):
    async def on_get(self, req, resp, node_id):
        self.runtime.check_admin(bearer(req))
        resp.media = await self.runtime.call(self.runtime.registry.get_node, node_id)

    async def on_delete(self, req, resp, node_id):
        token = bearer(req)
        if token is not None and token.startswith(tokens.NODE):
            await self.runtime.own_node(token, node_id)
            reason = "left"
        else:
            self.runtime.check_admin(token)
            reason = "admin"
        revision = await self.runtime.write(self.runtime.registry.delete_node, node_id, reason)
        resp.media = {"deleted": node_id, "revision": revision}


class JoinTokens(Resource):
    async def on_post(self, req, resp):
        self.runtime.check_admin(bearer(req))
        request = await body(req, schemas.JoinTokenCreate, self.runtime.config)
        resp.status = falcon.HTTP_201
        resp.media = await self.runtime.call(self.runtime.registry.create_join_token, request)

    async def on_get(self, req, resp):
        self.runtime.check_admin(bearer(req))
        resp.media = {"join_tokens": await self.runtime.call(self.runtime.registry.list_join_tokens)}


class JoinToken(Resource):
    async def on_delete(self, req, resp, token_id):
        self.runtime.check_admin(bearer(req))
        resp.media = await self.runtime.call(self.runtime.registry.revoke_join_token, token_id)
