"""Heartbeat batching: answer heartbeats from memory, write them to the store in batches.

Owns the buffer between the heartbeat route and `Registry.record_heartbeats`. A batch is kept
for the next flush only when the store was unavailable; what the store refused is dropped.
At 10,000 nodes a write per heartbeat would be thousands of transactions a
second; a batch every `interval` is one. A heartbeat from an offline node
flushes at once so it comes back online without waiting.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Container

from control.rules.errors import Unavailable
from control.rules.records import HeartbeatReport, HeartbeatSent, TunnelDown
from control.rules.reflexive import reflexive_endpoint
from meshcommon.contract.addresses import Network
from meshcommon.contract.wire import NodeView
from meshcommon.plumbing.budget import Budgets
from meshcommon.plumbing.events import emit

MOVES_BURST = 10  # moves of its reflexive endpoint a node may make in a row
MOVE_EVERY = 30.0  # seconds: and then one every so often


def superseding(earlier: HeartbeatReport | None, later: HeartbeatReport | None) -> HeartbeatReport:
    """`later`, still carrying `earlier`'s report of the tunnels down when it has none of its own."""
    if later is None:
        assert earlier is not None
        return earlier
    if earlier is None or later.tunnels_down is not None:
        return later
    return dataclasses.replace(later, tunnels_down=earlier.tunnels_down)


class HeartbeatBuffer:
    def __init__(self, record: Callable[[dict[str, HeartbeatReport]], Awaitable[object]],
                 clock: Callable[[], float], interval: float, mesh_prefix: Network | None = None,
                 reflexive_hold: float = 0.0):
        self.record = record  # async (batch) -> list of node ids brought online
        self.clock = clock
        self.interval = interval
        self.mesh_prefix = mesh_prefix  # a request from a mesh IP has no reflexive endpoint
        # A new source address counts once it has held this long: a node alternating between two
        # addresses would otherwise make a revision of every heartbeat.
        self.reflexive_hold = reflexive_hold
        self.moving: dict[str, tuple[str | None, float, bool]] = {}  # node id -> (new endpoint, since, accepted)
        # And a node may move this often: past its budget it stays where it was (runs of heartbeats
        # from two addresses in turn would otherwise move it at every run).
        self.moves = Budgets(MOVES_BURST, 1 / MOVE_EVERY)
        self.pending: dict[str, HeartbeatReport] = {}
        self._kick = asyncio.Event()
        self._closed = False
        self._flushing = asyncio.Lock()  # one flush at a time: when flush() returns, all added before it is stored

    def receive(self, node_id: str, sent: HeartbeatSent, view: NodeView, members: Container[str]) -> None:
        """A heartbeat of `node_id` (which the cache shows as `view`), received now: dated, its
        reflexive endpoint worked out, and written at once when the node was offline or the
        heartbeat comes from a new address. Its tunnels down are kept once each and only for
        `members` other than itself, so a report never holds more than the mesh has nodes."""
        now = self.clock()
        endpoint = self.settled(node_id, reflexive_endpoint(sent.source_address, view.listen_port, self.mesh_prefix),
                                view, now)
        down = None
        if sent.tunnels_down is not None:
            named: dict[str, TunnelDown] = {}
            for d in sent.tunnels_down:
                if d.node_id in members and d.node_id != node_id and d.node_id not in named:
                    named[d.node_id] = TunnelDown(d.node_id, now - d.down_for, d.reason)
            down = tuple(named.values())
        self.add(node_id, HeartbeatReport(now, sent.applied_revision, endpoint, down),
                 urgent=not view.online or endpoint != view.reflexive_endpoint)

    def settled(self, node_id: str, endpoint: str | None, view: NodeView, now: float) -> str | None:
        """The reflexive endpoint to record: a new one once the node's heartbeats have come from it
        for `reflexive_hold` seconds and the node has a move to spend (at once for a node coming
        back online), else the one it has. An accepted move stands until the cache shows it."""
        if endpoint == view.reflexive_endpoint or not view.online:
            self.moving.pop(node_id, None)
            return endpoint
        moving = self.moving.get(node_id)
        if moving is None or moving[0] != endpoint:
            moving = self.moving[node_id] = (endpoint, now, False)
        if moving[2]:
            return endpoint
        if now - moving[1] < self.reflexive_hold or not self.moves.take(node_id, now):
            return view.reflexive_endpoint
        self.moving[node_id] = (endpoint, moving[1], True)
        return endpoint

    def add(self, node_id: str, report: HeartbeatReport, urgent: bool) -> None:
        """`report` for the next batch; `urgent` writes it at once. A report of the tunnels down is
        kept until stored, even when a later heartbeat of the same node (which reports no change)
        supersedes the rest."""
        self.pending[node_id] = superseding(self.pending.get(node_id), report)
        if urgent:
            self._kick.set()

    async def flush(self) -> None:
        """Store every heartbeat added before the call (waiting for a flush already under way)."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        batch, self.pending = self.pending, {}
        if not batch:
            return
        try:
            await self.record(batch)
        except Unavailable as exc:
            # The store is down, not the data bad: keep what has not been superseded for the next flush.
            for node_id, report in batch.items():
                self.pending[node_id] = superseding(report, self.pending.get(node_id))
            emit("heartbeat_flush_failed", reason=str(exc), nodes=len(batch))
        except Exception as exc:
            # Never re-queue what the store refused: it would fail every later flush with it.
            emit("heartbeat_flush_dropped", reason=repr(exc), nodes=len(batch))

    async def run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            await self.flush()

    def close(self) -> None:
        self._closed = True
        self._kick.set()
