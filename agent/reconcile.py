"""The reconcile pass: converge the interface on a netmap, and the loop that runs it.

Owns one pass (observe -> paths -> desired -> diff -> render -> apply -> changes), what the last one
reached (`applied_revision`), each peer's endpoint attempt (`paths.Attempt`), the count of the
writes the passes made (`apply.Writes`), how long the passes took (`metrics.Durations`), and the
log line of each change, rendered from the typed `Change`. A pass over an unchanged state reads
(netlink, WireGuard's socket) and writes nothing, not even the config file. A pass runs on every
new netmap, every RECHECK_INTERVAL seconds (which repairs drift: an interface or peer removed by
hand), and when an endpoint attempt runs out. Must not talk to the control plane.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.apply import Writes, apply, nudge
from agent.core import endpoints as paths
from agent.core.changes import Change, changes
from agent.core.desired import desired_state
from agent.core.diff import diff
from agent.core.metrics import Durations
from agent.core.model import DesiredState, Netmap, Observed, Plan
from agent.core.pacing import PASS_EVERY
from agent.core.render import render
from agent.observe import observe
from agent.statedir import StateDir
from meshcommon.plumbing.events import emit

RECHECK_INTERVAL = 10.0  # seconds between drift checks when nothing changed


@dataclass
class Reconciler:
    interface: str
    listen_port: int
    state: StateDir
    backend: str
    private_key: str = field(repr=False)
    public_key: str | None = None  # this node's: the interface must hold its private key (None: not checked)
    applied_revision: int | None = None  # the revision the interface last fully reached
    attempts: dict[str, paths.Attempt] = field(default_factory=dict)  # public key -> endpoint attempt
    clock: Callable[[], float] = time.time
    writes: Writes = field(default_factory=Writes)  # every write the passes made
    durations: Durations = field(default_factory=Durations)  # how long each pass took
    timer: Callable[[], float] = time.perf_counter
    recorded: DesiredState | None = None  # the desired state the config file says
    reconciled: Netmap | None = None  # the netmap of the last pass that reached it

    def choose_endpoints(self, netmap: Netmap, observed: Observed) -> tuple[dict[str, str | None], list[str]]:
        """Each online peer's endpoint to write (None: leave WireGuard's), and the mesh IPs of the
        configured peers now tried at a new candidate (to nudge into a handshake)."""
        now, stats = self.clock(), {s.public_key: s for s in observed.stats}
        chosen, attempts, switched = {}, {}, []
        for peer in netmap.peers:
            if not peer.online:
                continue
            choice = paths.choose(peer, netmap.me, stats.get(peer.public_key), self.attempts.get(peer.public_key), now)
            chosen[peer.public_key] = choice.endpoint
            if choice.attempt is not None:
                attempts[peer.public_key] = choice.attempt
            if choice.switched and choice.endpoint is not None:
                switched.append(peer.mesh_ip)
                emit("endpoint_tried", node=netmap.me.node_id, peer=peer.name, endpoint=choice.endpoint,
                     source=str(paths.source_of(peer, choice.endpoint)), reason="no_fresh_handshake",
                     revision=netmap.revision)
        self.attempts = attempts
        return chosen, switched

    def unchanged_but_revision(self, netmap: Netmap) -> bool:
        """Whether `netmap` is the one the last pass reached but for its revision (another node's
        change that this node's map does not show), and no endpoint attempt has run out (one that
        runs out later wakes a pass of its own): no pass needed."""
        last, due = self.reconciled, self.next_due()
        return (last is not None and self.applied_revision == last.revision and (due is None or due > 0)
                and (netmap.me, netmap.peers, netmap.mesh_prefix) == (last.me, last.peers, last.mesh_prefix))

    def next_due(self) -> float | None:
        """Seconds until an endpoint attempt runs out (None: no attempt under way)."""
        return paths.due(self.attempts, self.clock())

    def record(self, desired: DesiredState, revision: int, plan: Plan) -> bool:
        """Keep the config file the record of the desired state (for the operator: `wg showconf`'s
        format): rendered (at this revision) when that changed, or when this pass writes; not for a
        revision that changes nothing on this node. Whether it was rendered."""
        if plan.empty and self.recorded == desired:
            return False
        self.state.save_conf(render(desired, self.private_key, revision))
        self.recorded = desired
        return True

    def reconcile(self, netmap: Netmap, announce_noop: bool = True) -> list[Change]:
        """One pass: converge the interface on `netmap`. What it changed (and what failed)."""
        started = self.timer()
        try:
            return self._reconcile(netmap, announce_noop)
        finally:
            self.durations.observe(self.timer() - started)

    def _reconcile(self, netmap: Netmap, announce_noop: bool) -> list[Change]:
        observed = observe(self.interface)
        endpoints, switched = self.choose_endpoints(netmap, observed)
        desired = desired_state(netmap, self.interface, self.listen_port, endpoints, self.public_key)
        plan = diff(observed, desired)
        rendered = self.record(desired, netmap.revision, plan)
        if plan.empty:
            if switched:
                nudge(switched)  # the endpoint already is the candidate: just ask for a handshake
            if announce_noop and rendered:  # a revision that changes nothing here is not worth a line
                emit("apply_noop", node=netmap.me.node_id, reason="converged", revision=netmap.revision)
            self.applied_revision = netmap.revision
            self.reconciled = netmap
            return []
        result = apply(plan, desired, backend=self.backend, private_key=self.private_key,
                       wg_log=str(self.state.wg_log), writes=self.writes)
        if switched:
            nudge(switched)
        found = changes(plan, result, netmap)
        for change in found:
            emit(change.kind.value, **change.fields())
        if not result.failed:
            self.applied_revision = netmap.revision
            self.reconciled = netmap
        return found

    async def run(self, current: Callable[[], Netmap | None], wake: asyncio.Event) -> None:
        """Pass whenever `wake` is set (announcing a pass that had nothing to do), and on every
        RECHECK_INTERVAL (quietly), over the `current()` netmap; until cancelled. While netmaps
        keep coming, passes are PASS_EVERY apart at least: one pass takes every netmap that came
        meanwhile, so a flood of revisions costs ten passes a second, not one per revision."""
        loop = asyncio.get_running_loop()
        passed_at = checked_at = float("-inf")  # the last pass begun, and the last that read the system
        while True:
            due = self.next_due()
            wait = RECHECK_INTERVAL if due is None else min(RECHECK_INTERVAL, due + 0.05)
            try:
                await asyncio.wait_for(wake.wait(), wait)
                triggered = True
            except TimeoutError:
                triggered = False
            await asyncio.sleep(max(0.0, passed_at + PASS_EVERY - loop.time()))
            wake.clear()
            passed_at = loop.time()
            netmap = current()
            if netmap is None:
                continue
            if triggered and self.unchanged_but_revision(netmap) and loop.time() - checked_at < RECHECK_INTERVAL:
                self.applied_revision = netmap.revision  # nothing on this node to read or write
                self.reconciled = netmap
                continue
            checked_at = loop.time()
            try:
                await asyncio.to_thread(self.reconcile, netmap, triggered)  # the only caller: no lock
            except Exception as exc:  # a failed pass is retried on the next one
                emit("apply_failed", node=netmap.me.node_id, reason=repr(exc), revision=netmap.revision)
