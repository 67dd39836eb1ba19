"""The per-worker runtime: the async face of the registry that resources call.

Owns the thread pool the blocking service runs in, the membership cache, the
revision feed, the heartbeat buffer and the sweeper, and their start and stop.
Authentication of node tokens is answered from the cache, so heartbeats and
netmap polls cost no database round trip.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from falcon.asgi import SSEvent

from control import db as database
from control import ipam, tokens
from control.config import Config
from control.errors import Forbidden, Unauthorized
from control.heartbeats import HeartbeatBuffer
from control.membership import MembershipCache
from control.metrics import NETMAPS, WAKE
from control.schemas import Heartbeat
from control.service import NOTIFY_CHANNEL, Registry, Settings, new_id
from control.watch import PostgresListener, RevisionFeed
from meshcommon.events import emit


class Runtime:
    def __init__(self, config: Config, clock=time.time, make_id=new_id, sweeper: bool = True):
        self.config = config
        self.clock = clock
        self.sweeper = sweeper
        prefix = ipam.parse_prefix(config.cidr)
        self.settings = Settings(prefix, config.heartbeat_interval, config.offline_after,
                                 config.sweep_interval)
        self.registry = Registry(self.settings, clock, make_id, on_change=self._on_change)
        self.cache = MembershipCache(str(prefix))
        self.admin_token = tokens.ensure_admin_token(config.admin_token_path)
        # Requests, liveness writes and cache refreshes get separate threads, so a burst of
        # registrations can neither delay a sweep (and fake an outage) nor a long-poll wake-up.
        self.executor = ThreadPoolExecutor(config.db_threads, thread_name_prefix="store")
        self.liveness_executor = ThreadPoolExecutor(1, thread_name_prefix="liveness")
        self.feed_executor = ThreadPoolExecutor(1, thread_name_prefix="feed")
        self.feed: RevisionFeed | None = None
        self.heartbeats: HeartbeatBuffer | None = None
        self.listener: PostgresListener | None = None
        self.tasks: list[asyncio.Task] = []
        self.draining = False
        self._signal_handlers: dict = {}

    async def call(self, fn, *args, executor=None):
        return await asyncio.get_running_loop().run_in_executor(executor or self.executor, fn, *args)

    async def write(self, fn, *args):
        """Run a membership change; this worker's cache includes it before the caller is answered."""
        result = await self.call(fn, *args)
        await self.feed.refresh()
        return result

    def _on_change(self, revision: int) -> None:
        if self.feed is not None:
            self.feed.kick_threadsafe(revision)

    async def start(self) -> None:
        self.feed = RevisionFeed(self.cache,
                                 lambda since: self.call(self.registry.load, since, executor=self.feed_executor),
                                 self.config.poll_interval if not database.is_postgres() else 1.0)
        self.heartbeats = HeartbeatBuffer(lambda batch: self.call(self.registry.record_heartbeats, batch,
                                                                  executor=self.liveness_executor),
                                          self.clock, self.config.heartbeat_flush_interval)
        await self.feed.refresh()
        if database.is_postgres():
            self.listener = PostgresListener(database.db.obj, NOTIFY_CHANNEL, self.feed.kick)
            self.listener.start()
        self._hook_shutdown_signals()
        self.tasks = [asyncio.create_task(self.feed.run()), asyncio.create_task(self.heartbeats.run())]
        if self.sweeper:
            self.tasks.append(asyncio.create_task(self._sweep_forever()))

    def _hook_shutdown_signals(self) -> None:
        """Start draining on SIGTERM/SIGINT, before the server's own (graceful) shutdown.

        The server stops accepting connections at once but waits for open ones, and a watch
        stream never ends by itself: without this, a stopping instance would go on sweeping
        while no heartbeat can reach it, and declare healthy nodes offline.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous):
                loop.call_soon_threadsafe(self.drain, f"signal {signum}")
                if callable(previous):
                    previous(signum, frame)
            self._signal_handlers[sig] = previous
            signal.signal(sig, handler)

    def drain(self, reason: str) -> None:
        """Stop deciding liveness and end every watch, so the instance can shut down cleanly."""
        if self.draining:
            return
        self.draining = True
        emit("control_draining", reason=reason, revision=self.cache.revision)
        self.feed.close()

    async def _sweep_forever(self) -> None:
        failing = False
        while not self.draining:
            try:
                await self.call(self.registry.sweep, executor=self.liveness_executor)
                failing = False
            except Exception as exc:
                if not failing:
                    emit("sweep_failed", reason=str(exc))
                failing = True
            await asyncio.sleep(self.config.sweep_interval)

    async def stop(self) -> None:
        self.draining = True
        for sig, previous in self._signal_handlers.items():
            signal.signal(sig, previous)
        if self.feed is not None:
            self.feed.close()
        if self.heartbeats is not None:
            self.heartbeats.close()
            await self.heartbeats.flush()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.listener is not None:
            self.listener.stop()
        for executor in (self.executor, self.liveness_executor, self.feed_executor):
            executor.shutdown(wait=True)

    # -- authentication ---------------------------------------------------

    def check_admin(self, bearer: str | None) -> None:
        if not bearer or not tokens.same_secret(bearer, self.admin_token):
            raise Unauthorized("admin token required")

    async def node_for(self, bearer: str | None) -> str:
        if not bearer or not bearer.startswith(tokens.NODE):
            raise Unauthorized("node token required")
        token_hash = tokens.digest(bearer)
        node_id = self.cache.node_for(token_hash)
        if node_id is None:  # registered through another worker a moment ago?
            await self.feed.refresh()
            node_id = self.cache.node_for(token_hash)
        if node_id is None:
            raise Unauthorized("unknown node token: the node was removed or never registered")
        return node_id

    async def own_node(self, bearer: str | None, node_id: str) -> str:
        me = await self.node_for(bearer)
        if me != node_id:
            raise Forbidden("a node token acts for its own node only")
        return me

    # -- node routes ------------------------------------------------------

    async def heartbeat(self, node_id: str, beat: Heartbeat) -> dict:
        view = self.cache.nodes.get(node_id)
        self.heartbeats.add(node_id, beat, urgent=view is None or not view.online)
        return {"revision": self.cache.revision, "heartbeat_interval": self.config.heartbeat_interval,
                "offline_after": self.config.offline_after}

    async def _wait(self, since: int | None, wait: float) -> bool:
        """Hold a long-poll until the revision passes `since`; True when it was released by a change."""
        if since is not None and since > self.cache.revision:
            await self.feed.refresh()  # the caller saw a revision this worker has not loaded yet
        if since is not None and since == self.cache.revision and wait > 0:
            return await self.feed.wait_past(since, min(wait, self.config.max_wait))
        return False

    async def netmap(self, node_id: str, since: int | None, wait: float) -> tuple[str, bytes] | None:
        """The node's netmap; None means 'not modified since `since`' (after waiting up to `wait`)."""
        woken = await self._wait(since, wait)
        if node_id not in self.cache.nodes:
            raise Unauthorized("this node was removed from the mesh")
        if since is not None and since == self.cache.revision:
            return None
        found = self.cache.answer(node_id, since)
        if woken:
            WAKE.observe(self.feed.woke_for())
        return found

    async def netmap_stream(self, node_id: str, since: int | None, keepalive: float = 15.0):
        """Server-sent events: a `netmap` event now (unless `since` is current), then one per change.

        A change costs one write per watcher instead of a request per watcher, which is what
        lets one worker keep thousands of nodes current. A comment every `keepalive` seconds
        lets both ends notice a dead connection (Falcon ends the stream of a gone client).
        """
        revision, woken = since, False
        while not self.feed.closed:
            if node_id not in self.cache.nodes:
                yield SSEvent(event="error", data=b'{"error":"unauthorized","message":"this node was removed"}')
                return
            if revision != self.cache.revision:
                kind, blob = self.cache.answer(node_id, revision)
                if woken:
                    WAKE.observe(self.feed.woke_for())
                NETMAPS.labels(kind).inc()
                revision = self.cache.revision
                yield SSEvent(event="netmap", data=blob, event_id=str(revision))
            woken = await self.feed.wait_past(revision, keepalive)
            if not woken and not self.feed.closed:
                yield None  # Falcon writes a keepalive comment

    async def nodes(self, since: int | None, wait: float) -> dict | None:
        await self._wait(since, wait)
        if since is not None and since == self.cache.revision:
            return None
        return await self.call(self.registry.list_nodes)
