"""Changes: what one reconcile pass did to the interface, as typed events. Pure.

Owns the translation of (plan, what `apply` reached, netmap) into `Change` values, in the spirit of
innernet's `PeerDiff::changes()`: peers added, removed (offline, or deleted from the mesh) and
updated, addresses and routes added and removed, the interface created, and each step that failed.
A peer change is reported only once WireGuard took it: that peer's own step. The log line of a change is
rendered from it (`Change.fields`), never parsed back. Must not do I/O or log.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.core.diff import same_endpoint
from agent.core.model import Applied, Netmap, Plan, Step, StepKind, WgPeer

PEER_KINDS = frozenset({StepKind.PEER_ADDED, StepKind.PEER_REMOVED, StepKind.PEER_UPDATED})
# Steps reported as a change of their own (peer steps are reported with what the netmap says of the peer).
STEP_CHANGES = frozenset({StepKind.INTERFACE_CREATED, StepKind.ADDRESS_ADDED, StepKind.ADDRESS_REMOVED,
                          StepKind.ROUTE_ADDED, StepKind.ROUTE_REMOVED})
CHANGE_KINDS = PEER_KINDS | STEP_CHANGES | {StepKind.APPLY_ERROR}  # every kind a Change has: an event each


@dataclass(frozen=True)
class Change:
    kind: StepKind
    node: str
    reason: str
    revision: int
    peer: str | None = None  # the peer's display name; None when the netmap no longer has it
    public_key: str | None = None
    target: str | None = None  # the interface, address or route a step was about
    allowed_ips: tuple[str, ...] = ()
    endpoint: str | None = None
    step: StepKind | None = None  # apply_error: the step that failed

    def fields(self) -> dict:
        """The fields of this change's log line (its event name is `kind`)."""
        if self.kind in PEER_KINDS:
            what: dict = {"peer": self.peer, "public_key": self.public_key}
            if self.kind is StepKind.PEER_ADDED:
                what |= {"allowed_ips": list(self.allowed_ips), "endpoint": self.endpoint}
        elif self.kind is StepKind.APPLY_ERROR:
            what = {"step": str(self.step), "target": self.target}
        else:
            what = {"target": self.target}
        return {"node": self.node, **what, "reason": self.reason, "revision": self.revision}


def update_reason(observed: WgPeer, desired: WgPeer) -> str:
    """Why a configured peer was rewritten, by the same rules as `diff.peer_differs`."""
    if not same_endpoint(desired.endpoint, observed.endpoint):
        return "endpoint"
    if sorted(desired.allowed_ips) != sorted(observed.allowed_ips):
        return "allowed_ips"
    return "keepalive"


def peer_changes(plan: Plan, netmap: Netmap) -> dict[Step, Change]:
    """The change each peer step of the plan makes (a step's target is the peer's public key), in
    the plan's order: added, removed, updated."""
    node, revision = netmap.me.node_id, netmap.revision
    known = {p.public_key: p for p in netmap.peers}
    found = {Step(StepKind.PEER_ADDED, peer.public_key): Change(
        StepKind.PEER_ADDED, node, "online", revision, peer.name, peer.public_key, allowed_ips=peer.allowed_ips,
        endpoint=peer.endpoint) for peer in plan.peers_added}
    for peer in plan.peers_removed:
        info = known.get(peer.public_key)
        found[Step(StepKind.PEER_REMOVED, peer.public_key)] = Change(
            StepKind.PEER_REMOVED, node, "offline" if info is not None else "deleted", revision,
            info.name if info is not None else None, peer.public_key)
    for old, new in plan.peers_updated:
        found[Step(StepKind.PEER_UPDATED, new.public_key)] = Change(
            StepKind.PEER_UPDATED, node, update_reason(old, new), revision, new.name, new.public_key)
    return found


def changes(plan: Plan, result: Applied, netmap: Netmap) -> list[Change]:
    """The changes a pass made, in the order they happened, then what failed."""
    node, revision = netmap.me.node_id, netmap.revision
    per_peer = peer_changes(plan, netmap) if plan.sync_wireguard else {}
    found: list[Change] = []
    for step in result.done:
        if step in per_peer:
            found.append(per_peer[step])
        elif step.kind in STEP_CHANGES:
            found.append(Change(step.kind, node, "reconcile", revision, target=step.target))
    found += [Change(StepKind.APPLY_ERROR, node, failure.reason, revision, target=failure.step.target,
                     step=failure.step.kind) for failure in result.failed]
    return found
