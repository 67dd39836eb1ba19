"""The app factory: a Falcon ASGI app wired to one per-worker Runtime.

Owns the route table, error mapping (domain errors -> JSON bodies, once), the
media handler and the lifespan hooks that start and stop the runtime.
"""
from __future__ import annotations

import logging
import time

import falcon
import falcon.asgi
import falcon.media
import msgspec

from control import resources as r
from control.config import Config
from control.errors import DomainError
from control.metrics import LATENCY, REQUESTS
from control.openapi import build_spec
from control.runtime import Runtime

log = logging.getLogger(__name__)

ROUTES = [
    ("/healthz", r.Health),
    ("/metrics", r.Metrics),
    ("/v1/challenge", r.Challenge),
    ("/v1/register", r.Register),
    ("/v1/nodes/{node_id}/heartbeat", r.Heartbeat),
    ("/v1/netmap", r.Netmap),
    ("/v1/nodes", r.Nodes),
    ("/v1/nodes/{node_id}", r.Node),
    ("/v1/join-tokens", r.JoinTokens),
    ("/v1/join-tokens/{token_id}", r.JoinToken),
]


class Lifespan:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def process_startup(self, scope, event):
        await self.runtime.start()

    async def process_shutdown(self, scope, event):
        await self.runtime.stop()


class Timing:
    async def process_request(self, req, resp):
        req.context.started = time.perf_counter()

    async def process_response(self, req, resp, resource, req_succeeded):
        route = req.uri_template or "unknown"
        REQUESTS.labels(route, req.method, resp.status_code).inc()
        if "wait" not in req.params:
            LATENCY.labels(route, req.method).observe(time.perf_counter() - req.context.started)


async def domain_error(req, resp, exc: DomainError, params):
    resp.status = exc.status
    resp.media = exc.body()


def serialize_http_error(req, resp, exc: falcon.HTTPError):
    resp.content_type = falcon.MEDIA_JSON
    code = (exc.title or "error").lstrip("0123456789 ").lower().replace(" ", "_")
    resp.data = msgspec.json.encode({"error": code, "message": exc.description or exc.title})


def create_app(config: Config, runtime: Runtime | None = None):
    """The ASGI app; pass a `Runtime` to choose its clock, id generator or background tasks."""
    runtime = runtime or Runtime(config)
    app = falcon.asgi.App(middleware=[Lifespan(runtime), Timing()])
    json_handler = falcon.media.JSONHandler(dumps=msgspec.json.encode, loads=msgspec.json.decode)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_error_handler(DomainError, domain_error)
    app.set_error_serializer(serialize_http_error)
    for path, resource in ROUTES:
        app.add_route(path, resource(runtime))
    app.add_route("/v1/openapi.json", r.OpenAPI(runtime, build_spec()))
    return app

