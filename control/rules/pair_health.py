"""Which pairs of nodes have no working tunnel now, and why. Pure.

Owns the pair-health matrix: from what each agent reports (its `tunnels_down`), the pairs of nodes
without a working tunnel, each with one reason an operator can act on (an offline node first, then
what the NAT situation explains). Must not do I/O or read the clock.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from control.rules.records import NodeRecord
from meshcommon.contract.addresses import behind_nat

# The reasons an agent gives for a peer it has no working tunnel to, as operators read them.
AGENT_REASONS = {"no_handshake": "no handshake", "stale_handshake": "handshake expired",
                 "no_traffic": "nothing received"}


@dataclass(frozen=True)
class Pair:
    """Two nodes without a working tunnel: ids in order, since when, why, and who said so."""

    nodes: tuple[str, str]
    names: tuple[str, str]
    since: float
    reason: str
    reported_by: tuple[str, ...]


def pair_reason(a: NodeRecord, b: NodeRecord, agent_reasons: Iterable[str]) -> str:
    """One reason for an operator: an offline node first, then what the NAT situation explains."""
    offline = [node.name for node in (a, b) if not node.online]
    if offline:
        return f"peer offline ({', '.join(offline)})"
    reasons = set(agent_reasons)
    if nat(a) and nat(b) and reasons <= {"no_handshake", "stale_handshake"}:
        return "both behind NAT (no handshake: one side needs a port-preserving NAT or a public endpoint)"
    return ", ".join(AGENT_REASONS.get(reason, reason) for reason in sorted(reasons))


def unhealthy_pairs(records: Iterable[NodeRecord]) -> list[Pair]:
    """Every pair of nodes one of which (online) reports no working tunnel to the other, ordered by
    since when. A report from an offline node is not current and counts for nothing; a report
    naming a node that no longer exists is dropped."""
    by_id = {node.id: node for node in records}
    reports: dict[tuple[str, str], list[tuple[str, float, str]]] = {}
    for node in by_id.values():
        if not node.online:
            continue
        for down in node.tunnels_down:
            if down.node_id in by_id and down.node_id != node.id:
                key = (min(node.id, down.node_id), max(node.id, down.node_id))
                reports.setdefault(key, []).append((node.id, down.since, down.reason))
    pairs = []
    for (a, b), said in reports.items():
        first, second = by_id[a], by_id[b]
        pairs.append(Pair((a, b), (first.name, second.name), min(since for _, since, _ in said),
                          pair_reason(first, second, (reason for _, _, reason in said)),
                          tuple(sorted(reporter for reporter, _, _ in said))))
    return sorted(pairs, key=lambda pair: (pair.since, pair.nodes))


def nat(node: NodeRecord) -> bool:
    """Whether the node's requests come from another address than the one it advertises."""
    return behind_nat(node.endpoint, node.reflexive_endpoint)
