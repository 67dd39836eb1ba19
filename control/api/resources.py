"""HTTP resources: thin responders that read the request, authenticate and call a collaborator.

Owns the mapping of each route to what it calls and how its answer is framed (JSON, ETag and
304, server-sent events). Each resource is given only the collaborators it uses: its fields, which
the app fills in (dataclasses, compared by identity). No business rules and no SQL here; errors
are raised as domain errors and turned into JSON by the app.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import falcon
import msgspec
from falcon.asgi import SSEvent

from control.api import edge, schemas, views
from control.api.edge import BodyReader, Source, bearer, wait_params
from control.api.metrics import NETMAPS, WAKE, exposition
from control.live.auth import Auth
from control.live.heartbeats import HeartbeatBuffer
from control.live.membership import MembershipCache
from control.live.runtime import AsyncRegistry
from control.live.send_budget import SendBudget
from control.live.watch import RevisionFeed
from control.rules import tokens
from control.rules.errors import TooManyRequests, Unauthorized
from control.rules.records import RegistrySettings

# Netmap streams of one node in one worker: an agent holds one, and more only while connections it
# left behind are not known dead yet (a path lost silently is noticed only at a send). Opening one
# past STREAMS_PER_NODE ends the node's oldest (the newest is the live one); past STREAMS_HARD_CAP
# (a node opening them faster than the old ones end) the new one is refused.
STREAMS_PER_NODE = 4
STREAMS_HARD_CAP = 8
# A netmap event larger than a piece (a mass change makes every stream's next one about as large as
# a full map) waits for its share of the worker's budget of bytes in flight and is written a piece
# at a time: each write waits for the connection to drain below its high-water mark, so a reader
# that stopped reading adds one piece to its connection's buffer, and holds its one event until the
# write timeout aborts it (not a queue of them). Smaller events are written whole.
STREAM_PIECE = 16 * 1024
STREAM_BUDGET = 32 * 2**20  # bytes of large events in flight in one worker
STREAM_PATIENCE = 2.0  # seconds a reader may take to drain its event before its share is given back


class RawEvent(SSEvent):
    """Bytes already framed as server-sent events, or a piece of them, written as they are."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        super().__init__()
        self.raw = raw

    def serialize(self, handler: Any = None) -> bytes:
        return self.raw


# An empty write: the server writes nothing, but first waits, as before every write, for a
# connection whose writes are paused to drain.
DRAINED = RawEvent(b"")


def netmap_frame(blob: bytes, revision: int) -> bytes:
    """A netmap as one server-sent event (what Falcon's SSEvent frames in three copies, in one)."""
    return b"".join((b"event: netmap\nid: %d\ndata: " % revision, blob, b"\n\n"))


def tagged(resp: Any, media: Any, revision: int) -> None:
    """An answer with its revision as ETag; None is 304 Not Modified."""
    resp.etag = f'"r{revision}"'
    if media is None:
        resp.status = falcon.HTTP_304
    else:
        resp.media = media


async def admin_only(req: Any, resp: Any, resource: Any, params: Any) -> None:
    """A Falcon hook: the responders it guards answer the admin token only."""
    resource.auth.check_admin(bearer(req))


def token_of(req: Any) -> str:
    token = bearer(req)
    if token is None:
        raise Unauthorized("join token or node token required")
    return token


def enrolling_token(req: Any) -> str:
    """A bearer that can be a join token or a node token at all (by its kind prefix)."""
    token = token_of(req)
    if not token.startswith((tokens.JOIN, tokens.NODE)):
        raise Unauthorized("join token or node token required")
    return token


@dataclass(eq=False)
class HealthResource:
    registry: AsyncRegistry
    cache: MembershipCache

    async def on_get(self, req, resp):
        resp.media = views.health(await self.registry.current_revision(), self.cache.revision)


@dataclass(eq=False)
class MetricsResource:
    cache: MembershipCache
    feed: RevisionFeed
    budget: SendBudget

    async def on_get(self, req, resp):
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = exposition(self.cache, self.feed, self.budget)


@dataclass(eq=False)
class OpenAPIResource:
    spec: dict

    async def on_get(self, req, resp):
        resp.media = self.spec


@dataclass(eq=False)
class ChallengeResource:
    registry: AsyncRegistry

    async def on_get(self, req, resp):
        resp.media = await self.registry.challenge(token_of(req))


@dataclass(eq=False)
class RegisterResource:
    registry: AsyncRegistry
    body: BodyReader
    source: Source
    settings: RegistrySettings

    async def on_post(self, req, resp):
        token = enrolling_token(req)  # before the body: a stranger gets a 401 for free
        request = await self.body.read(req, schemas.RegisterBody)
        registration = edge.registration(request, self.source.address(req), self.settings.prefix, req.user_agent)
        enrolled = await self.registry.register(token, registration)
        resp.media = views.registered(enrolled, self.settings)


@dataclass(eq=False)
class HeartbeatResource:
    auth: Auth
    body: BodyReader
    source: Source
    heartbeats: HeartbeatBuffer
    cache: MembershipCache
    settings: RegistrySettings

    async def on_post(self, req, resp, node_id):
        node_id = await self.auth.own_node(bearer(req), node_id)
        sent = await edge.read_heartbeat(req, self.body, self.source)
        view = self.cache.nodes.get(node_id)
        if view is None:  # removed while its body was read
            raise Unauthorized("this node was removed from the mesh")
        self.heartbeats.receive(node_id, sent, view, self.cache.nodes)
        resp.media = views.heartbeat_answer(self.cache.revision, self.settings)


@dataclass(eq=False)
class NetmapResource:
    """The node's netmap: one answer (a long-poll with `since` and `wait`), or server-sent events."""

    auth: Auth
    feed: RevisionFeed
    cache: MembershipCache
    keepalive: float  # seconds between comments on an idle stream: both ends notice a dead connection
    budget: SendBudget  # the worker's bytes of large events in flight, shared by its streams
    streams: dict[str, list[asyncio.Event]] = field(default_factory=dict)  # node -> its streams' ends, oldest first

    async def on_get(self, req, resp):
        node_id = await self.auth.node_for(bearer(req))
        since, wait = wait_params(req)
        if req.get_param_as_bool("stream", default=False):
            resp.sse = self.events(node_id, since)
            return
        found = await self.answer(node_id, since, wait)
        NETMAPS.labels("not_modified" if found is None else found[0]).inc()
        resp.etag = f'"r{self.cache.revision}"'
        if found is None:
            resp.status = falcon.HTTP_304
        else:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = found[1]

    async def answer(self, node_id: str, since: int | None, wait: float) -> tuple[str, bytes] | None:
        """(kind, JSON) of the node's netmap; None means 'not modified since `since`' (after waiting up to `wait`)."""
        woken = await self.feed.hold(since, wait)
        if node_id not in self.cache.nodes:
            raise Unauthorized("this node was removed from the mesh")
        if self.feed.unchanged(since):
            return None
        found = self.cache.answer(node_id, since)
        if woken:
            WAKE.observe(self.feed.woke_for())
        return found

    async def events(self, node_id: str, since: int | None) -> AsyncIterator[SSEvent | None]:
        """A `netmap` event now (unless `since` is current), then one per change.

        A change costs one write per watcher instead of a request per watcher, which is what
        lets one worker keep thousands of nodes current. A comment every `keepalive` seconds
        lets both ends notice a dead connection (Falcon ends the stream of a gone client). The
        comments keep the stream's own phase, from when it opened: counted from the last event,
        every stream would send its comment at the same moment, `keepalive` seconds after each
        change, and stall the worker for as long as a change's fan-out.
        """
        open_ = self.streams.setdefault(node_id, [])
        if len(open_) >= STREAMS_HARD_CAP:
            yield SSEvent(event="error", data=msgspec.json.encode(TooManyRequests(
                f"{STREAMS_HARD_CAP} netmap streams of this node are open here already").body()))
            return
        if len(open_) >= STREAMS_PER_NODE:
            open_[len(open_) - STREAMS_PER_NODE].set()  # the oldest not already ended: a newer one replaces it
        ended = asyncio.Event()
        open_.append(ended)
        try:
            async for event in self._events(node_id, since, ended):
                yield event
        finally:
            open_.remove(ended)
            if not open_:
                self.streams.pop(node_id, None)

    async def _events(self, node_id: str, since: int | None, ended: asyncio.Event) -> AsyncIterator[SSEvent | None]:
        loop = asyncio.get_running_loop()
        keepalive_at = loop.time() + self.keepalive
        woken = False
        while not self.feed.closed:
            if ended.is_set():  # replaced by a newer stream of this node (this one is most likely dead)
                yield SSEvent(event="error", data=msgspec.json.encode(TooManyRequests(
                    "a newer netmap stream of this node replaced this one").body()))
                return
            if node_id not in self.cache.nodes:
                yield SSEvent(event="error", data=msgspec.json.encode(Unauthorized("this node was removed").body()))
                return
            current = self.cache.revision
            if since != current:
                kind, blob = self.cache.answer(node_id, since)
                if len(blob) <= STREAM_PIECE:
                    if woken:
                        WAKE.observe(self.feed.woke_for())
                    NETMAPS.labels(kind).inc()
                    yield RawEvent(netmap_frame(blob, current))
                else:
                    share = self.budget.take_now(len(blob))
                    waited = share is None
                    if share is None:  # its turn comes later: the answer is built again then, not held meanwhile
                        size = len(blob)
                        del blob
                        share = await self.budget.take(size)
                    try:
                        if node_id not in self.cache.nodes or ended.is_set():
                            continue  # said at the top
                        if waited:  # the revision may have moved on meanwhile: one merged delta
                            current = self.cache.revision
                            kind, blob = self.cache.answer(node_id, since)
                        if woken:
                            WAKE.observe(self.feed.woke_for())
                        NETMAPS.labels(kind).inc()
                        frame = netmap_frame(blob, current)
                        del blob
                        for start in range(0, len(frame), STREAM_PIECE):
                            yield RawEvent(frame[start:start + STREAM_PIECE])
                        del frame
                        yield DRAINED
                    finally:
                        share.release()
            since = current
            woken = await self.feed.wait_past(since, keepalive_at - loop.time())
            if not woken and not self.feed.closed:
                keepalive_at = max(keepalive_at, loop.time()) + self.keepalive
                yield None  # Falcon writes a keepalive comment


@dataclass(eq=False)
class NodesResource:
    """/v1/nodes, long-polled like the netmap, and one node (/v1/nodes/{node_id}, suffix `node`)."""

    auth: Auth
    registry: AsyncRegistry
    cache: MembershipCache
    body: BodyReader

    @falcon.before(admin_only)
    async def on_get(self, req, resp):
        since, wait = wait_params(req)
        listing = await self.registry.nodes_after(since, wait)
        if listing is None:
            tagged(resp, None, self.cache.revision)
        else:
            tagged(resp, views.nodes(*listing), listing[0])

    @falcon.before(admin_only)
    async def on_get_node(self, req, resp, node_id):
        resp.media = views.node_detail(await self.registry.get_node(node_id))

    @falcon.before(admin_only)
    async def on_patch_node(self, req, resp, node_id):
        request = await self.body.read(req, schemas.NodeRenameBody)
        resp.media = views.node_detail(await self.registry.rename_node(node_id, request.name))

    async def on_delete_node(self, req, resp, node_id):
        reason = await self.auth.removal_reason(bearer(req), node_id)
        resp.media = views.deleted(node_id, await self.registry.delete_node(node_id, reason))


@dataclass(eq=False)
class MeshHealthResource:
    """/v1/mesh/health: the pairs of nodes without a working tunnel now (admin only)."""

    auth: Auth
    registry: AsyncRegistry

    @falcon.before(admin_only)
    async def on_get(self, req, resp):
        resp.media = views.mesh_health(*await self.registry.unhealthy_pairs())


@dataclass(eq=False)
class JoinTokensResource:
    """/v1/join-tokens, and one join token (/v1/join-tokens/{token_id}, suffix `token`): admin only."""

    auth: Auth
    registry: AsyncRegistry
    body: BodyReader

    @falcon.before(admin_only)
    async def on_post(self, req, resp):
        request = await self.body.read(req, schemas.JoinTokenCreateBody)
        resp.status = falcon.HTTP_201
        resp.media = views.join_token_created(*await self.registry.create_join_token(edge.join_token_request(request)))

    @falcon.before(admin_only)
    async def on_get(self, req, resp):
        resp.media = views.join_tokens(await self.registry.list_join_tokens())

    @falcon.before(admin_only)
    async def on_delete_token(self, req, resp, token_id):
        resp.media = views.join_token(await self.registry.revoke_join_token(token_id))
