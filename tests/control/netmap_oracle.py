"""The netmap a node is told, built the slow and obvious way: the oracle the membership cache's
spliced answers (per-node JSON, shared between watchers) are checked against."""
from __future__ import annotations

from control.rules.netmap import Delta, Membership, choose_delta, delta_map
from meshcommon.contract.wire import DeltaNetmap, FullNetmap


def full_map(membership: Membership, me: str, prefix: str) -> FullNetmap:
    return FullNetmap(membership.revision, prefix, membership.nodes[me],
                      [view for node_id, view in membership.nodes.items() if node_id != me])


def netmap_for(membership: Membership, me: str, prefix: str, since: int | None,
               change: Delta | None = None) -> FullNetmap | DeltaNetmap:
    """What node `me` is told: a delta when `since` is recent and the delta is small, else the full map."""
    chosen = choose_delta(membership, since, change)
    if chosen is not None:
        return delta_map(membership, chosen, me, prefix)
    return full_map(membership, me, prefix)
