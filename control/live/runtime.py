"""The per-worker runtime: the collaborators every resource is given, and their start and stop.

Owns the thread pools the blocking registry runs in (and `AsyncRegistry`, its face for the event
loop), the membership cache, the revision feed, the heartbeat buffer, authentication, the store's
change listener and the sweeper, and draining on SIGTERM. Resources receive the parts they use,
never the runtime. Must not import the store: the registry is the way to it.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from control.config import Config
from control.live.auth import Auth
from control.live.heartbeats import HeartbeatBuffer
from control.live.membership import MembershipCache
from control.live.outage import Outage
from control.live.watch import RevisionFeed
from control.registry.registry import Registry, new_id
from control.rules import ipam, tokens
from control.rules.pair_health import Pair
from control.rules.records import (
    Enrolled,
    HeartbeatReport,
    JoinTokenRequest,
    JoinTokenStatus,
    Loaded,
    NodeRecord,
    Registration,
    RegistrySettings,
)
from meshcommon.contract.wire import ChallengeAnswer
from meshcommon.plumbing.events import emit

T = TypeVar("T")
ANNOUNCED_POLL_INTERVAL = 1.0  # seconds between polls when every change is announced: a fallback only


def revision_poll_interval(store_announces: bool, workers: int, poll_interval: float) -> float:
    """How often a worker reads the store's revision to learn of changes made elsewhere: often
    only when another writer could change it unannounced (SQLite with several workers). A lone
    worker on SQLite makes every change itself and kicks its own feed (`Runtime._on_change`);
    PostgreSQL announces each one. Polling SQLite 20 times a second cost an idle control plane
    about 4 % of a core here, and several times that in an emulated VM."""
    return ANNOUNCED_POLL_INTERVAL if store_announces or workers == 1 else poll_interval


class Stoppable(Protocol):
    def stop(self) -> None: ...


# Heartbeat intervals a new source address must hold to become the node's reflexive endpoint: the
# second heartbeat from it counts, a node alternating between addresses never does.
REFLEXIVE_HOLD = 0.75


class AsyncRegistry:
    """The registry's calls as coroutines, run in the store threads. A membership change is in
    this worker's cache before its caller is answered."""

    def __init__(self, registry: Registry, feed: RevisionFeed, executor: ThreadPoolExecutor):
        self.registry = registry
        self.feed = feed
        self.executor = executor

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.registry.guarded, fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        result = await self._call(fn, *args)
        await self.feed.refresh()
        return result

    async def current_revision(self) -> int:
        return await self._call(self.registry.current_revision)

    async def challenge(self, bearer: str) -> ChallengeAnswer:
        return await self._call(self.registry.challenge, bearer)

    async def register(self, bearer: str, registration: Registration) -> Enrolled:
        return await self._write(self.registry.register, bearer, registration)

    async def delete_node(self, node_id: str, reason: str) -> int:
        return await self._write(self.registry.delete_node, node_id, reason)

    async def rename_node(self, node_id: str, name: str) -> NodeRecord:
        return await self._write(self.registry.rename_node, node_id, name)

    async def get_node(self, node_id: str) -> NodeRecord:
        return await self._call(self.registry.get_node, node_id)

    async def nodes_after(self, since: int | None, wait: float) -> tuple[int, list[NodeRecord]] | None:
        """Every node, once the revision passed `since` (waiting up to `wait`); None if it did not."""
        await self.feed.hold(since, wait)
        if self.feed.unchanged(since):
            return None
        return await self._call(self.registry.list_nodes)

    async def unhealthy_pairs(self) -> tuple[int, list[Pair]]:
        return await self._call(self.registry.unhealthy_pairs)

    async def create_join_token(self, request: JoinTokenRequest) -> tuple[JoinTokenStatus, str]:
        return await self._call(self.registry.join_tokens.create, request)

    async def list_join_tokens(self) -> list[JoinTokenStatus]:
        return await self._call(self.registry.join_tokens.every)

    async def revoke_join_token(self, token_id: str) -> JoinTokenStatus:
        return await self._call(self.registry.join_tokens.revoke, token_id)


class Runtime:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time,
                 make_id: Callable[[], str] = new_id, sweeper: bool = True):
        self.config = config
        self.clock = clock
        self.sweeper = sweeper
        self.settings = RegistrySettings(ipam.parse_prefix(config.cidr), config.heartbeat_interval,
                                         config.offline_after, config.sweep_interval)
        self.registry = Registry(self.settings, clock, make_id, on_change=self._on_change)
        self.cache = MembershipCache(str(self.settings.prefix))
        # Requests, liveness writes and cache refreshes get separate threads, so a burst of
        # registrations can neither delay a sweep (and fake an outage) nor a long-poll wake-up.
        self.executor = ThreadPoolExecutor(config.db_threads, thread_name_prefix="store")
        self.liveness_executor = ThreadPoolExecutor(1, thread_name_prefix="liveness")
        self.feed_executor = ThreadPoolExecutor(1, thread_name_prefix="feed")
        poll = revision_poll_interval(self.registry.announces_changes(), config.workers, config.poll_interval)
        self.feed = RevisionFeed(self.cache, self._load, poll, config.max_wait)
        self.heartbeats = HeartbeatBuffer(self._record_heartbeats, clock, config.heartbeat_flush_interval,
                                          self.settings.prefix, REFLEXIVE_HOLD * config.heartbeat_interval)
        self.auth = Auth(tokens.ensure_admin_token(config.admin_token_path), self.cache, self.feed)
        self.async_registry = AsyncRegistry(self.registry, self.feed, self.executor)
        self.listener: Stoppable | None = None  # the store's change listener, once started (PostgreSQL)
        self.tasks: list[asyncio.Task] = []
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._signal_handlers: dict = {}

    async def call(self, fn: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor or self.executor, fn, *args)

    async def _load(self, since: int | None) -> Loaded:
        return await self.call(self.registry.load, since, executor=self.feed_executor)

    async def _record_heartbeats(self, batch: dict[str, HeartbeatReport]) -> list[str]:
        return await self.call(self.registry.record_heartbeats, batch, executor=self.liveness_executor)

    def _on_change(self, revision: int) -> None:
        """A revision this worker committed (in a store thread): refresh the cache now, not at the next poll."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.feed.kick)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.feed.refresh()
        self.listener = self.registry.listen(self.feed.kick)
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
        outage = Outage("sweep_failed")
        while not self.draining:
            try:
                await self.call(self.registry.sweep, executor=self.liveness_executor)
                outage.ok()
            except Exception as exc:
                outage.failed(exc)
            await asyncio.sleep(self.config.sweep_interval)

    async def stop(self) -> None:
        self.draining = True
        for sig, previous in self._signal_handlers.items():
            signal.signal(sig, previous)
        self.feed.close()
        self.heartbeats.close()
        await self.heartbeats.flush()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.listener is not None:
            self.listener.stop()
        for executor in (self.executor, self.liveness_executor, self.feed_executor):
            executor.shutdown(wait=True)
