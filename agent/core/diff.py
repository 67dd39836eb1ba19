"""Diff: a pure function from (observed, desired) to the Plan that converges them.

Owns what counts as a difference. Peers are matched by public key. An endpoint given as a host
name is not compared (WireGuard shows only the address it resolved to), so a name never causes
endless reconfiguration. The listen port is planned only when it differs (wireguard-go rebinds on
every port it is sent). An identical state yields an empty plan. Must not do I/O.
"""
from __future__ import annotations

from agent.core.model import DesiredState, Observed, Plan, WgPeer
from meshcommon.contract.addresses import host


def is_literal(endpoint: str | None) -> bool:
    return endpoint is not None and host(endpoint) is not None


def same_endpoint(desired: str | None, observed: str | None) -> bool:
    if desired is None or desired == observed or not is_literal(desired):
        return True  # the same text, or nothing to enforce: WireGuard learns or resolved it
    return observed is not None and host(desired) == host(observed) and \
        desired.rpartition(":")[2] == observed.rpartition(":")[2]


def peer_differs(desired: WgPeer, observed: WgPeer) -> bool:
    return (sorted(desired.allowed_ips) != sorted(observed.allowed_ips)
            or desired.keepalive != observed.keepalive
            or not same_endpoint(desired.endpoint, observed.endpoint))


def diff(observed: Observed, desired: DesiredState) -> Plan:
    want = {p.public_key: p for p in desired.peers}
    have = {p.public_key: p for p in observed.peers}
    added = tuple(want[k] for k in sorted(want.keys() - have.keys()))
    removed = tuple(have[k] for k in sorted(have.keys() - want.keys()))
    updated = tuple((have[k], want[k]) for k in sorted(want.keys() & have.keys()) if peer_differs(want[k], have[k]))
    addresses = frozenset({desired.address})
    return Plan(
        create_interface=not observed.exists,
        set_up=not observed.up,
        add_addresses=addresses - observed.addresses,
        remove_addresses=observed.addresses - addresses,
        set_private_key=desired.public_key is not None and observed.public_key != desired.public_key,
        listen_port=None if observed.listen_port == desired.listen_port else desired.listen_port,
        peers_added=added, peers_removed=removed, peers_updated=updated,
        add_routes=desired.routes - observed.routes,
        remove_routes=observed.routes - desired.routes,
    )
