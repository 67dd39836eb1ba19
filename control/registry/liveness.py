"""Liveness in the store: heartbeats written in batches, nodes back online, offline sweeps.

Owns what a heartbeat batch and a sweep change: `last_seen` and the applied revision of every node
of a batch, one revision for the nodes it brings back online or finds at a new address, and one for
the nodes a sweep declares offline (the rule is `control.rules.liveness.decide_sweep`). Called by
the registry inside its write transactions; must not import the HTTP layer or the runtime.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from control.registry.written import Written
from control.rules.errors import Unavailable
from control.rules.liveness import decide_sweep
from control.rules.records import HeartbeatReport, RegistrySettings
from control.store import db as database
from control.store import mesh_state, nodes
from meshcommon.plumbing.events import emit

_disruption_logged = False  # this process logged the disruption under way: once, not every sweep
DROPPED_LOGGED = 10  # nodes whose dropped heartbeat is logged by name in one batch
Write = Callable[[Callable[[], Written[list[str]]]], list[str]]  # the registry's write: a transaction, announced


def record(batch: dict[str, HeartbeatReport], write: Write) -> list[str]:
    """Store a batch of heartbeats; nodes that were offline come back online (returns those ids),
    and a node whose requests now come from another address gets that reflexive endpoint.

    One transaction for the batch. If the store refuses it (full, a value it cannot hold) rather
    than being down, each node is written alone; a node whose report is refused is written again
    without its tunnels (its liveness is what counts), and only if that fails too is its
    heartbeat dropped (and logged): one node's data never costs another node its liveness.
    `Unavailable` means the store is down or busy: the caller may keep the batch for the next try.
    """
    try:
        _store(batch)
    except Exception as exc:  # refused whole (full, or a value the store cannot hold), or down
        if database.unavailable(exc):
            raise Unavailable(f"store unavailable: {exc}") from None
        dropped: dict[str, str] = {}
        full = False  # the store refused a heartbeat even without its tunnels, for want of space:
        for node_id in sorted(batch):  # the others' small writes would fail too, not tried one by one
            reason, full = ("the store is full", True) if full else _store_alone(node_id, batch[node_id])
            if reason is not None:
                dropped[node_id] = reason
        for node_id, reason in list(dropped.items())[:DROPPED_LOGGED]:
            emit("heartbeat_dropped", node=node_id, reason=f"store refused it: {reason}")
        if len(dropped) > DROPPED_LOGGED:  # a full store refuses everyone's: one line, not one per node
            emit("heartbeat_dropped", nodes=len(dropped) - DROPPED_LOGGED, reason="store refused them too")
    stored = nodes.liveness(batch)
    returning = [node_id for node_id, (online, _) in stored.items() if not online]
    moved = {node_id: report.reflexive_endpoint for node_id, report in batch.items()
             if node_id in stored and stored[node_id][1] != report.reflexive_endpoint}
    if not returning and not moved:
        return []
    return write(lambda: _after(returning, moved))


def _store_alone(node_id: str, report: HeartbeatReport) -> tuple[str | None, bool]:
    """Store one node's report, without its tunnels if the store refuses it whole; why it was
    refused altogether (None: stored), and whether that was for want of space."""
    attempts = [report] if report.tunnels_down is None else [report, replace(report, tunnels_down=None)]
    for attempt in attempts:
        try:
            _store({node_id: attempt})
            if attempt is not report:
                emit("heartbeat_trimmed", node=node_id, reason="store refused its tunnels_down report")
            return None, False
        except Exception as exc:
            if database.unavailable(exc):
                raise Unavailable(f"store unavailable: {exc}") from None
            if attempt is not report and database.full(exc):
                return f"the store is full: {exc}", True
            failure: Exception = exc
    return str(failure), False


def _store(batch: dict[str, HeartbeatReport]) -> None:
    database.retrying(lambda: nodes.record_heartbeats(batch))


def _after(candidates: list[str], moved: dict[str, str | None]) -> Written[list[str]]:
    """One revision for the nodes a batch brings back online and those it finds at a new address."""
    mesh_state.lock()
    ids = nodes.offline_among(candidates) if candidates else []
    stored = nodes.reflexive_endpoints(moved)
    moved = {node_id: found for node_id, found in moved.items() if node_id in stored and stored[node_id] != found}
    if not ids and not moved:
        return Written([], None)
    revision = mesh_state.bump(sorted(set(ids) | moved.keys()))
    if ids:
        nodes.set_online(ids, True, revision)
    for node_id in ids:
        emit("node_online", node=node_id, reason="heartbeat", revision=revision)
    for node_id, found in sorted(moved.items()):
        nodes.set_reflexive(node_id, found, revision)
        emit("node_reflexive_changed", node=node_id, reflexive_endpoint=found, before=stored[node_id],
             reason="heartbeat", revision=revision)
    return Written(ids, revision)


def sweep(now: float, settings: RegistrySettings) -> Written[list[str]]:
    """Declare offline every node silent for longer than the offline threshold (in the caller's write)."""
    global _disruption_logged
    state = mesh_state.lock()
    late = nodes.online_silent_since(now - settings.late_after)
    online = nodes.online_count() if late else 0
    decision = decide_sweep(now, state.last_sweep_at, state.grace_until, late,
                            settings.offline_after, settings.gap_limit,
                            online=online, hold=settings.disruption_hold, late_after=settings.late_after)
    mesh_state.record_sweep(now, decision.grace_until)
    if decision.grace_started and state.last_sweep_at is not None:
        emit("liveness_grace", reason="sweeping_resumed", paused_for=round(now - state.last_sweep_at, 3),
             grace_until=decision.grace_until)
    if decision.disruption and not _disruption_logged:
        emit("liveness_grace", reason="most_nodes_silent", silent=len(late), online=online,
             hold=settings.disruption_hold)
    _disruption_logged = decision.disruption
    if not decision.offline:
        return Written([], None)
    revision = mesh_state.bump(decision.offline)
    nodes.set_online(decision.offline, False, revision)
    for node_id in decision.offline:
        emit("node_offline", node=node_id, reason="no_heartbeat", last_seen=late[node_id],
             silent_for=round(now - late[node_id], 3), revision=revision)
    return Written(list(decision.offline), revision)
