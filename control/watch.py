"""Following the revision: wake long-polls the moment membership changes, in any worker.

Owns refreshing the membership cache and releasing waiters. A change is seen
three ways: this process committed it (immediate kick), PostgreSQL NOTIFY from
another worker or instance (immediate), or the periodic poll (the fallback,
and the only cross-process path on SQLite).
"""
from __future__ import annotations

import asyncio
import logging

from control.membership import MembershipCache
from meshcommon.events import emit

log = logging.getLogger(__name__)


class RevisionFeed:
    def __init__(self, cache: MembershipCache, load, poll_interval: float):
        self.cache = cache
        self.load = load  # async (since) -> Loaded
        self.poll_interval = poll_interval
        self._event = asyncio.Event()
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self.waiters = 0
        self.advanced_at = self._loop.time()  # when the cache last moved to a new revision

    def woke_for(self) -> float:
        """Seconds since the cache last advanced: how long a just-released waiter took."""
        return self._loop.time() - self.advanced_at

    def kick_threadsafe(self, revision: int | None = None) -> None:
        self._loop.call_soon_threadsafe(self._kick.set)

    def kick(self) -> None:
        self._kick.set()

    async def refresh(self) -> None:
        async with self._lock:
            since = self.cache.revision if self.cache.revision >= 0 else None
            loaded = await self.load(since)
            if self.cache.apply(loaded):
                self._release()

    def _release(self) -> None:
        self.advanced_at = self._loop.time()
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_past(self, since: int, timeout: float) -> bool:
        """Wait until the cached revision passes `since` (True), or the timeout or close (False)."""
        deadline = self._loop.time() + timeout
        self.waiters += 1
        try:
            while self.cache.revision <= since and not self._closed:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._event.wait(), remaining)
                except TimeoutError:
                    return False
            return self.cache.revision > since
        finally:
            self.waiters -= 1

    async def run(self) -> None:
        failing = False
        while not self._closed:
            try:
                await asyncio.wait_for(self._kick.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._kick.clear()
            try:
                await self.refresh()
                if failing:
                    emit("store_restored", reason="refresh", revision=self.cache.revision)
                failing = False
            except Exception as exc:  # the store is down: keep serving the last known map
                if not failing:
                    emit("store_unreachable", reason=str(exc), revision=self.cache.revision)
                failing = True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._kick.set()
        self._release()


class PostgresListener:
    """LISTEN on the revision channel; every notification kicks the feed.

    If the connection fails the listener stops and logs it; the feed's 1 s poll keeps
    watchers current until the worker restarts (re-listening is not implemented).
    """

    def __init__(self, database, channel: str, kick):
        self.database = database
        self.channel = channel
        self.kick = kick
        self.conn = None

    def start(self) -> None:
        import psycopg2
        import psycopg2.extensions
        params = dict(self.database.connect_params)
        self.conn = psycopg2.connect(dbname=self.database.database, **params)
        self.conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with self.conn.cursor() as cursor:
            cursor.execute(f"LISTEN {self.channel}")
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            self.conn.poll()
        except Exception as exc:
            emit("store_unreachable", reason=f"listen: {exc}")
            self.stop()
            return
        if self.conn.notifies:
            self.conn.notifies.clear()
            self.kick()

    def stop(self) -> None:
        if self.conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
            except Exception:
                log.debug("listener already detached")
            self.conn.close()
            self.conn = None
