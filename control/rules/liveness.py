"""Liveness decisions: pure rules for when a node is declared offline.

Owns the offline threshold and the restart grace. A node is offline once no
heartbeat arrived for `offline_after` seconds. When the control plane itself
was not sweeping for longer than `gap_limit` (it was down, or its database
was), every node gets `offline_after` seconds from the moment sweeping resumes
before it can be declared offline: a control-plane outage must never make the
mesh tear itself down.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SweepDecision:
    offline: tuple[str, ...]
    grace_until: float
    grace_started: bool


def decide_sweep(now: float, last_sweep_at: float | None, grace_until: float,
                 online_last_seen: Mapping[str, float], offline_after: float,
                 gap_limit: float) -> SweepDecision:
    """Which online nodes to declare offline now, and the grace deadline to store."""
    started = last_sweep_at is None or now - last_sweep_at > gap_limit
    if started:
        grace_until = max(grace_until, now + offline_after)
    if now < grace_until:
        return SweepDecision((), grace_until, started)
    stale = tuple(sorted(node_id for node_id, seen in online_last_seen.items()
                         if now - seen > offline_after))
    return SweepDecision(stale, grace_until, started)
