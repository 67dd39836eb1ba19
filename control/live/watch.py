"""Following the revision: wake long-polls the moment membership changes, in any worker.

Owns refreshing the membership cache (callers that come during a load share the next) and
holding and releasing waiters. A change is seen three ways: this process committed it
(immediate kick), the store announced it from another worker or instance (PostgreSQL NOTIFY,
`store/notify.py`; immediate), or the periodic poll (the fallback, and the only cross-process
path on SQLite). Knows the store only as `load`.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from control.live.membership import MembershipCache
from control.live.outage import Outage
from control.rules.records import Loaded

WAKE_SLICE = 64  # waiters released per turn of the event loop: requests are served between slices


class RevisionFeed:
    def __init__(self, cache: MembershipCache, load: Callable[[int | None], Awaitable[Loaded]],
                 poll_interval: float, max_wait: float, wake_slice: int = WAKE_SLICE):
        self.cache = cache
        self.load = load  # async (since) -> Loaded
        self.poll_interval = poll_interval
        self.max_wait = max_wait  # the longest a long-poll is held, whatever it asks for
        self.wake_slice = wake_slice
        # Each waiter is a future of its own, resolved by a release or its timer: no task and no
        # Event per wait (asyncio.wait_for made a task of every wait, 10,000 of them per change).
        self._waiting: dict[asyncio.Future[bool], None] = {}  # in arrival order; a dict to drop one in O(1)
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loads = 0  # loads begun that did not fail: a caller is served by one begun after its call
        self._closed = False
        self.advanced_at = time.monotonic()  # when the cache last moved to a new revision (the loop's clock)

    @property
    def waiters(self) -> int:
        """Long-polls and streams waiting for the next revision (released ones are on their way)."""
        return len(self._waiting)

    def woke_for(self) -> float:
        """Seconds since the cache last advanced: how long a just-released waiter took."""
        return time.monotonic() - self.advanced_at

    def kick(self) -> None:
        self._kick.set()

    async def refresh(self) -> None:
        """Bring the cache up to what the store holds now: return once a load begun after the call is applied.

        Callers that come while a load is under way share the next one: a burst of registrations,
        or of heartbeats with tokens this worker has not loaded yet, costs two loads, not one each.
        """
        ticket = self._loads
        async with self._lock:
            if self._loads > ticket:  # a load begun after this call was applied while it waited
                return
            since = self.cache.revision if self.cache.revision >= 0 else None
            self._loads += 1
            try:
                loaded = await self.load(since)
            except BaseException:
                self._loads -= 1  # nobody was served: whoever waits for it loads again
                raise
            if self.cache.apply(loaded):
                self._release()

    def _release(self) -> None:
        """Release every waiter, `wake_slice` per turn of the loop.

        Released all at once, 10,000 streams would each write their event before the loop reads
        another request: every heartbeat arriving meanwhile would wait for the whole fan-out.
        """
        self.advanced_at = time.monotonic()
        released, self._waiting = list(self._waiting), {}
        self._wake(released, 0)

    def _wake(self, released: list[asyncio.Future[bool]], start: int) -> None:
        end = start + self.wake_slice
        for waiter in released[start:end]:
            if not waiter.done():
                waiter.set_result(True)
        if end < len(released):
            asyncio.get_running_loop().call_soon(self._wake, released, end)

    def unchanged(self, since: int | None) -> bool:
        """Whether `since` is the revision this worker has: nothing to tell its caller."""
        return since is not None and since == self.cache.revision

    async def hold(self, since: int | None, wait: float) -> bool:
        """Hold a long-poll until the revision passes `since`; True when it was released by a change."""
        if since is not None and since > self.cache.revision:
            await self.refresh()  # the caller saw a revision this worker has not loaded yet
        if since is not None and since == self.cache.revision and wait > 0:
            return await self.wait_past(since, min(wait, self.max_wait))
        return False

    async def wait_past(self, since: int, timeout: float) -> bool:
        """Wait until the cached revision passes `since` (True), or the timeout or close (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.cache.revision <= since and not self._closed:
            if loop.time() >= deadline:
                return False
            waiter = loop.create_future()
            self._waiting[waiter] = None
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiting.pop(waiter, None)
        return self.cache.revision > since

    async def run(self) -> None:
        outage = Outage("store_unreachable", "store_restored")
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.poll_interval)
            self._kick.clear()
            try:
                await self.refresh()
                outage.ok(reason="refresh", revision=self.cache.revision)
            except Exception as exc:  # the store is down: keep serving the last known map
                outage.failed(exc, revision=self.cache.revision)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._kick.set()
        self._release()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
