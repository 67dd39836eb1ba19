"""The bytes of large netmap events one worker may have on their way to clients at once.

Owns the fairness and the memory bound of a mass change (thousands of nodes back online at once:
every stream's next event is about as large as a full map). A stream takes a share the size of its
event before building it, waits its turn when the worker's budget is spent (first come, first
served), and gives it back once the connection drained the event (its writes were not paused),
or after `patience` seconds: a reader that does not drain in time (a slow link, a dead or hostile
client) stops holding back everyone else; what it still holds is its one event, until the write
timeout aborts its connection (the share does not bound that: see docs/design.md). While a stream waits, the revision
moves on: its event, built when its turn comes, is one merged delta. Knows nothing of HTTP.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Share:
    """One stream's part of the budget, from its grant until `release` (once, whichever comes first:
    the drain, the patience's timer, or the stream's end)."""

    def __init__(self, budget: SendBudget, size: int, patience: float):
        self.budget, self.size = budget, size
        self.timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(patience, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.size:
            self.budget.slow += 1
        self.release()

    def release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        size, self.size = self.size, 0
        if size:
            self.budget.give_back(size)


class SendBudget:
    def __init__(self, limit: int, patience: float):
        self.limit = limit  # bytes of large events in flight at once in this worker
        self.patience = patience  # seconds a reader may take to drain its event before its share is given back
        self.in_flight = 0
        self.waits = 0  # events that waited for their turn
        self.slow = 0  # events whose reader did not drain them within the patience
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    def take_now(self, size: int) -> Share | None:
        """A share of `size` bytes if it fits now and nobody waits before it; else None (nothing taken)."""
        size = self._clamped(size)
        if self._queue or self.in_flight + size > self.limit:
            return None
        self._grant(size)
        return Share(self, size, self.patience)

    async def take(self, size: int) -> Share:
        """A share of `size` bytes (one event larger than the whole budget goes alone), when it fits."""
        size = self._clamped(size)
        if self._queue or self.in_flight + size > self.limit:
            self.waits += 1
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (size, turn)
            self._queue.append(entry)
            try:
                await turn
            except BaseException:  # cancelled while waiting (the stream ended): its place, or its grant, back
                if turn.done() and not turn.cancelled():
                    self.give_back(size)
                else:
                    with contextlib.suppress(ValueError):  # already passed over by `_admit`
                        self._queue.remove(entry)
                    self._admit()
                raise
        else:
            self._grant(size)
        return Share(self, size, self.patience)

    def _clamped(self, size: int) -> int:
        return max(1, min(size, self.limit))

    def _grant(self, size: int) -> None:
        self.in_flight += size

    def give_back(self, size: int) -> None:
        self.in_flight -= size
        self._admit()

    def _admit(self) -> None:
        """Grant the waiting streams, in their order, as long as the next one fits."""
        while self._queue and self.in_flight + self._queue[0][0] <= self.limit:
            size, turn = self._queue.popleft()
            if turn.done():  # cancelled meanwhile
                continue
            self._grant(size)
            turn.set_result(None)
