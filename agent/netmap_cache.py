"""The netmap cache (`netmap.json`): the map as received, written often enough, and no more often.

Owns when the cache is written: at once if it was not written in the last `every` seconds, else
once that much time has passed (the map held then), and at once when the agent stops. A flood of
revisions so costs a write a second, not two fsyncs each; a crash loses at most that second of
changes, which the agent asks the control plane for again. Its format is `intake`'s.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.core import intake
from agent.core.pacing import CACHE_EVERY
from agent.statedir import StateDir


class NetmapCache:
    def __init__(self, state: StateDir, held: Callable[[], intake.Received | None], every: float = CACHE_EVERY):
        self.state = state
        self.held = held  # the map held now: what a write takes
        self.every = every
        self.timer: asyncio.TimerHandle | None = None
        self.written_at = float("-inf")

    def persist(self) -> None:
        """Write the map held, now or once `every` seconds have passed since the last write."""
        if self.timer is not None:
            return  # a write is due already, and takes the map held then
        loop = asyncio.get_running_loop()
        wait = self.written_at + self.every - loop.time()
        if wait <= 0:
            self._write()
        else:
            self.timer = loop.call_later(wait, self._write)

    def _write(self) -> None:
        self.timer = None
        received = self.held()
        if received is not None:
            self.state.save_netmap(intake.cache_bytes(received))
            self.written_at = asyncio.get_running_loop().time()

    def flush(self) -> None:
        """Write a cache that is due, now (the agent is stopping)."""
        if self.timer is not None:
            self.timer.cancel()
            self._write()

    def cancel(self) -> None:
        """Write nothing that is due: this node's map is no longer one to keep (it was removed)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
