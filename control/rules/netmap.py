"""Netmaps and deltas: pure functions from membership to what one node is told.

Owns the shape of `GET /v1/netmap` answers and the delta rule: a node that
last saw revision S gets every node changed after S, upserted with its current
state or listed as removed. No database, clock or I/O here.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshcommon.contract.wire import DeltaNetmap, NodeView


@dataclass(frozen=True)
class Membership:
    """Membership at one revision plus the change log needed for deltas.

    `changes` holds (revision, node_id) pairs sorted by revision and complete
    for every revision after `horizon`: deltas are exact for since >= horizon.
    """

    revision: int
    nodes: Mapping[str, NodeView]
    changes: Sequence[tuple[int, str]] = ()
    horizon: int = 0


@dataclass(frozen=True)
class Delta:
    since: int
    revision: int
    upserted: tuple[NodeView, ...] = ()
    removed: tuple[str, ...] = field(default=())


def changed_since(changes: Sequence[tuple[int, str]], since: int) -> list[str]:
    """Node ids changed after `since`, each once, in order of their last change."""
    start = bisect.bisect_right(changes, (since, "\U0010ffff"))
    last: dict[str, int] = {}
    for revision, node_id in changes[start:]:
        last.pop(node_id, None)
        last[node_id] = revision
    return list(last)


def delta(membership: Membership, since: int) -> Delta | None:
    """The delta from `since` to the current revision, or None when only a full map is exact."""
    if since < membership.horizon or since > membership.revision:
        return None
    upserted, removed = [], []
    for node_id in changed_since(membership.changes, since):
        view = membership.nodes.get(node_id)
        if view is None:
            removed.append(node_id)
        else:
            upserted.append(view)
    return Delta(since, membership.revision, tuple(upserted), tuple(removed))


def delta_map(membership: Membership, change: Delta, me: str, prefix: str) -> DeltaNetmap:
    return DeltaNetmap(change.revision, change.since, prefix, membership.nodes[me],
                       [view for view in change.upserted if view.node_id != me],
                       [node_id for node_id in change.removed if node_id != me])


def choose_delta(membership: Membership, since: int | None, change: Delta | None = None) -> Delta | None:
    """The delta to answer with when `since` is recent and the delta is small; None means a full map.

    `change` may carry a precomputed `delta(membership, since)` shared by many watchers.
    """
    if since is None:
        return None
    change = change if change is not None else delta(membership, since)
    if change is not None and len(change.upserted) + len(change.removed) <= max(8, len(membership.nodes) // 2):
        return change
    return None


def merge_changes(changes: list[tuple[int, str]], new: Iterable[tuple[int, str]]) -> None:
    """Append newer changes, keeping the log sorted; older or repeated ones are ignored."""
    last = changes[-1] if changes else (-1, "")
    for item in sorted(new):
        if item > last:
            changes.append(item)
            last = item
