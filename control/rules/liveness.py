"""Liveness decisions: pure rules for when a node is declared offline.

Owns the offline threshold and the restart grace. A node is offline once no
heartbeat arrived for `offline_after` seconds. When the control plane itself
was not sweeping for longer than `gap_limit` (it was down, or its database
was), every node gets `offline_after` seconds from the moment sweeping resumes
before it can be declared offline: a control-plane outage must never make the
mesh tear itself down.

And a disruption: when at least half of the online nodes (and at least `DISRUPTION_MIN` of them)
fall silent together, the likelier fault is the control plane's own network, not that many
nodes (Kubernetes' node lifecycle controller reasons the same way and stops evicting in a full
disruption). Then a node is declared offline only once it has been silent for `hold` seconds
more: a blip on the control plane's side shorter than that changes nothing, and the nodes do
not all come back at once as a mass change to every watcher. A real mass failure shows after
the hold, and no node is ever kept online longer than that. Silent together counts every node
late (silent past `late_after`, a missed heartbeat): heartbeats are spread over the interval, so
when the first node crosses the offline threshold the others are late, not past it yet; counted
past the threshold alone, each sweep would see a few and declare them offline one after another.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DISRUPTION_SHARE = 0.5  # of the online nodes silent together: a disruption
DISRUPTION_MIN = 3  # nodes silent together, at least: one or two are just nodes failing


@dataclass(frozen=True)
class SweepDecision:
    offline: tuple[str, ...]
    grace_until: float
    grace_started: bool
    disruption: bool = False  # most nodes fell silent together: held online `hold` seconds longer


def decide_sweep(now: float, last_sweep_at: float | None, grace_until: float,
                 online_last_seen: Mapping[str, float], offline_after: float,
                 gap_limit: float, online: int = 0, hold: float = 0.0,
                 late_after: float | None = None) -> SweepDecision:
    """Which online nodes to declare offline now, and the grace deadline to store. `online_last_seen`
    holds the silent ones among the `online` nodes (at least those late, silent past `late_after`,
    by default the offline threshold); `hold` is how long a disruption holds them."""
    started = last_sweep_at is None or now - last_sweep_at > gap_limit
    if started:
        grace_until = max(grace_until, now + offline_after)
    if now < grace_until:
        return SweepDecision((), grace_until, started)
    stale = tuple(sorted(node_id for node_id, seen in online_last_seen.items()
                         if now - seen > offline_after))
    late = sum(1 for seen in online_last_seen.values() if now - seen > (late_after or offline_after))
    if stale and hold > 0 and disrupted(max(late, len(stale)), online):
        held = tuple(node_id for node_id in stale if now - online_last_seen[node_id] > offline_after + hold)
        return SweepDecision(held, grace_until, started, disruption=True)
    return SweepDecision(stale, grace_until, started)


def disrupted(silent: int, online: int) -> bool:
    """Whether `silent` of `online` nodes falling silent together looks like the control plane's
    network rather than the nodes."""
    return silent >= DISRUPTION_MIN and silent >= DISRUPTION_SHARE * online
