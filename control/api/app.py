"""The app factory: a Falcon ASGI app wired to one per-worker Runtime.

Owns the route table (each resource with the collaborators it uses), error mapping (domain
errors -> JSON bodies, once), the media handler and the lifespan hooks that start and stop the
runtime.
"""
from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.asgi
import falcon.media
import msgspec

from control.api import resources as r
from control.api.edge import BodyReader, Source
from control.api.metrics import LATENCY, REQUESTS
from control.api.openapi import build_spec
from control.config import Config
from control.live.runtime import Runtime
from control.live.send_budget import SendBudget
from control.rules.errors import DomainError
from control.rules.reflexive import parse_networks


def routes(runtime: Runtime) -> list[tuple[str, object, str | None]]:
    """(path, resource, suffix): each resource with the collaborators it uses, and nothing else."""
    auth, registry, cache, feed = runtime.auth, runtime.async_registry, runtime.cache, runtime.feed
    body, settings = BodyReader(runtime.config.max_body, runtime.config.body_timeout), runtime.settings
    source = Source(parse_networks(runtime.config.trusted_proxies))
    nodes, join_tokens = r.NodesResource(auth, registry, cache, body), r.JoinTokensResource(auth, registry, body)
    budget = SendBudget(r.STREAM_BUDGET, r.STREAM_PATIENCE)  # this worker's, shared by its netmap streams
    return [
        ("/healthz", r.HealthResource(registry, cache), None),
        ("/metrics", r.MetricsResource(cache, feed, budget), None),
        ("/v1/challenge", r.ChallengeResource(registry), None),
        ("/v1/register", r.RegisterResource(registry, body, source, settings), None),
        ("/v1/nodes/{node_id}/heartbeat",
         r.HeartbeatResource(auth, body, source, runtime.heartbeats, cache, settings), None),
        ("/v1/netmap", r.NetmapResource(auth, feed, cache, runtime.config.stream_keepalive, budget), None),
        ("/v1/nodes", nodes, None),
        ("/v1/nodes/{node_id}", nodes, "node"),
        ("/v1/mesh/health", r.MeshHealthResource(auth, registry), None),
        ("/v1/join-tokens", join_tokens, None),
        ("/v1/join-tokens/{token_id}", join_tokens, "token"),
        ("/v1/openapi.json", r.OpenAPIResource(build_spec()), None),
    ]


class Lifespan:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def process_startup(self, scope: Any, event: Any) -> None:
        await self.runtime.start()

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        await self.runtime.stop()


def method_label(method: str) -> str:
    """A metric label for the request method: the HTTP methods by name, anything else "other",
    so a client inventing method names cannot grow the metrics (and the memory) without bound."""
    return method if method in falcon.constants.COMBINED_METHODS else "other"


class Timing:
    async def process_request(self, req: Any, resp: Any) -> None:
        req.context.started = time.perf_counter()

    async def process_response(self, req: Any, resp: Any, resource: object, req_succeeded: bool) -> None:
        route = req.uri_template or "unknown"
        method = method_label(req.method)
        REQUESTS.labels(route, method, resp.status_code).inc()
        if "wait" not in req.params:
            LATENCY.labels(route, method).observe(time.perf_counter() - req.context.started)


async def domain_error(req: Any, resp: Any, exc: DomainError, params: Any) -> None:
    resp.status = exc.status
    resp.media = exc.body()


def serialize_http_error(req: Any, resp: Any, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    code = (exc.title or "error").lstrip("0123456789 ").lower().replace(" ", "_")
    resp.data = msgspec.json.encode({"error": code, "message": exc.description or exc.title})


def create_app(config: Config, runtime: Runtime | None = None) -> falcon.asgi.App:
    """The ASGI app; pass a `Runtime` to choose its clock, id generator or background tasks."""
    runtime = runtime or Runtime(config)
    middleware: list[Lifespan | Timing] = [Lifespan(runtime), Timing()]
    app = falcon.asgi.App(middleware=middleware)
    json_handler = falcon.media.JSONHandler(dumps=msgspec.json.encode, loads=msgspec.json.decode)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_error_handler(DomainError, domain_error)
    app.set_error_serializer(serialize_http_error)
    for path, resource, suffix in routes(runtime):
        app.add_route(path, resource, suffix=suffix)
    return app
