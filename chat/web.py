"""The browser UI and its JSON API, served by the daemon.

Owns the routes: static files from the package, the JSON API, live updates as server-sent
events. No build step, no CDN. Every request passes `chat.guard` first; the page carries this
daemon's token for the API calls of app.js. Sending and message states are the daemon's.
"""
from __future__ import annotations

import asyncio
import json
from importlib import resources

import falcon
import falcon.asgi
from falcon.asgi import SSEvent

from chat.daemon import Chat
from chat.guard import Access, Guard
from chat.protocol import ProtocolError

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
TOKEN_SLOT = b"MESHCHAT_TOKEN"  # in index.html's meta tag


class Page:
    def __init__(self, token: str):
        self.token = token

    async def on_get(self, req, resp, name: str = "index.html"):
        if name not in STATIC:
            raise falcon.HTTPNotFound()
        resp.content_type = STATIC[name]
        resp.data = resources.files("chat").joinpath("static", name).read_bytes()
        if name == "index.html":
            resp.data = resp.data.replace(TOKEN_SLOT, self.token.encode())
            resp.cache_control = ["no-store"]  # the token changes with every start of the daemon
            resp.set_header("Content-Security-Policy", "frame-ancestors 'none'")  # no clicks through a frame


class State:
    def __init__(self, chat: Chat):
        self.chat = chat

    async def on_get(self, req, resp):
        resp.media = self.chat.state()


class Messages:
    def __init__(self, chat: Chat):
        self.chat = chat

    async def on_get(self, req, resp):
        peer = req.get_param("peer", required=True)
        resp.media = {"messages": await asyncio.to_thread(self.chat.store.history, peer)}

    async def on_post(self, req, resp):
        body = await req.get_media()
        if not isinstance(body, dict) or not isinstance(body.get("peer"), str) or not isinstance(body.get("text"), str):
            raise falcon.HTTPBadRequest(title="bad request", description='expected {"peer": IP, "text": TEXT}')
        try:
            resp.media = await self.chat.send(body["peer"], body["text"])
        except LookupError as exc:
            raise falcon.HTTPNotFound(title="unknown peer", description=str(exc)) from None
        except (ProtocolError, ValueError) as exc:
            raise falcon.HTTPBadRequest(title="bad message", description=str(exc)) from None


class Retry:
    def __init__(self, chat: Chat):
        self.chat = chat

    async def on_post(self, req, resp, message_id):
        try:
            resp.media = await self.chat.retry(message_id)
        except LookupError as exc:
            raise falcon.HTTPNotFound(title="unknown message", description=str(exc)) from None


SUBSCRIBER_QUEUE = 256  # updates a page may leave unread before it is dropped (its browser reconnects)


class Events:
    def __init__(self, chat: Chat):
        self.chat = chat

    async def on_get(self, req, resp):
        queue: asyncio.Queue = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)

        async def stream():
            self.chat.subscribers.add(queue)  # here, not before: a stream never started subscribes nothing
            try:
                yield SSEvent(event="state", data=json.dumps(self.chat.state()).encode())
                while queue in self.chat.subscribers or not queue.empty():
                    try:
                        kind, data = await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield None  # keepalive
                        continue
                    yield SSEvent(event=kind, data=json.dumps(data).encode())
            finally:
                self.chat.subscribers.discard(queue)
        resp.sse = stream()


def create_app(chat: Chat, access: Access) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[Guard(access)])
    page = Page(access.token)
    app.add_route("/", page)
    app.add_route("/static/{name}", page)
    app.add_route("/api/state", State(chat))
    app.add_route("/api/messages", Messages(chat))
    app.add_route("/api/messages/{message_id}/retry", Retry(chat))
    app.add_route("/api/events", Events(chat))
    return app
