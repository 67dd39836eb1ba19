"""The reconcile pass: converge the interface on a netmap, and the loop that runs it.

Owns one pass (desired -> render -> observe -> diff -> apply -> changes), what the last one reached
(`applied_revision`), and the log line of each change, rendered from the typed `Change`. A pass
runs on every new netmap and every RECHECK_INTERVAL seconds, which repairs drift (an interface or
peer removed by hand). Must not talk to the control plane.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.apply import apply
from agent.changes import Change, changes
from agent.desired import desired_state
from agent.diff import diff
from agent.model import Netmap
from agent.observe import observe
from agent.render import render
from agent.state import StateDir
from meshcommon.events import emit

RECHECK_INTERVAL = 10.0  # seconds between drift checks when nothing changed


@dataclass
class Reconciler:
    interface: str
    listen_port: int
    state: StateDir
    backend: str
    private_key: str = field(repr=False)
    applied_revision: int | None = None  # the revision the interface last fully reached

    def reconcile(self, netmap: Netmap, announce_noop: bool = True) -> list[Change]:
        """One pass: converge the interface on `netmap`. What it changed (and what failed)."""
        desired = desired_state(netmap, self.interface, self.listen_port)
        self.state.save_conf(render(desired, self.private_key, netmap.revision))
        plan = diff(observe(self.interface), desired)
        if plan.empty:
            if announce_noop and self.applied_revision != netmap.revision:
                emit("apply_noop", node=netmap.me.node_id, reason="converged", revision=netmap.revision)
            self.applied_revision = netmap.revision
            return []
        result = apply(plan, desired, str(self.state.conf_path), self.backend, str(self.state.wg_log))
        found = changes(plan, result, netmap)
        for change in found:
            emit(change.kind.value, **change.fields())
        if not result.failed:
            self.applied_revision = netmap.revision
        return found

    async def run(self, current: Callable[[], Netmap | None], wake: asyncio.Event) -> None:
        """Pass whenever `wake` is set (announcing a pass that had nothing to do), and on every
        RECHECK_INTERVAL (quietly), over the `current()` netmap; until cancelled."""
        while True:
            try:
                await asyncio.wait_for(wake.wait(), RECHECK_INTERVAL)
                triggered = True
            except TimeoutError:
                triggered = False
            wake.clear()
            netmap = current()
            if netmap is None:
                continue
            try:
                await asyncio.to_thread(self.reconcile, netmap, triggered)  # the only caller: no lock
            except Exception as exc:  # a failed pass is retried on the next one
                emit("apply_failed", node=netmap.me.node_id, reason=repr(exc), revision=netmap.revision)
