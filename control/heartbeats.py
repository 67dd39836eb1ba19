"""Heartbeat batching: answer heartbeats from memory, write them to the store in batches.

Owns the buffer between the heartbeat route and `Registry.record_heartbeats`. A batch is kept
for the next flush only when the store was unavailable; what the store refused is dropped.
At 10,000 nodes a write per heartbeat would be thousands of transactions a
second; a batch every `interval` is one. A heartbeat from an offline node
flushes at once so it comes back online without waiting.
"""
from __future__ import annotations

import asyncio

from control.errors import Unavailable
from control.schemas import Heartbeat
from meshcommon.events import emit


class HeartbeatBuffer:
    def __init__(self, record, clock, interval: float):
        self.record = record  # async (batch) -> list of node ids brought online
        self.clock = clock
        self.interval = interval
        self.pending: dict[str, tuple[float, Heartbeat]] = {}
        self._kick = asyncio.Event()
        self._closed = False

    def add(self, node_id: str, beat: Heartbeat, urgent: bool) -> None:
        self.pending[node_id] = (self.clock(), beat)
        if urgent:
            self._kick.set()

    async def flush(self) -> None:
        batch, self.pending = self.pending, {}
        if not batch:
            return
        try:
            await self.record(batch)
        except Unavailable as exc:
            # The store is down, not the data bad: keep what has not been superseded for the next flush.
            for node_id, item in batch.items():
                self.pending.setdefault(node_id, item)
            emit("heartbeat_flush_failed", reason=str(exc), nodes=len(batch))
        except Exception as exc:
            # Never re-queue what the store refused: it would fail every later flush with it.
            emit("heartbeat_flush_dropped", reason=repr(exc), nodes=len(batch))

    async def run(self) -> None:
        while not self._closed:
            try:
                await asyncio.wait_for(self._kick.wait(), self.interval)
            except TimeoutError:
                pass
            self._kick.clear()
            await self.flush()

    def close(self) -> None:
        self._closed = True
        self._kick.set()
