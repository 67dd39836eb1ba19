"""Intake: the netmap answers the control plane sent, folded into one map and checked entry by entry. Pure.

Owns the agent's rules for `GET /v1/netmap` beyond its types (`meshcommon.contract.wire` owns those; the
client decodes answers with `wire.decode_netmap_entries`, so peer entries arrive as `msgspec.Raw`).
Each entry is checked alone: one that does not fit `wire.NodeView`, has an invalid or low-order
key, a mesh IP outside the mesh prefix, an endpoint that is not a numeric unicast IP:PORT
(`meshcommon.contract.endpoint`), or a mesh IP or public key an earlier entry holds, is rejected (reported,
never raised) and so can never reach `wg`: one bad peer never delays or blocks the others. Also
owns the format of the cached map (`netmap.json`). Must not do I/O.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import msgspec

from agent.core.model import Netmap
from meshcommon.contract import endpoint as endpoints
from meshcommon.contract import keys
from meshcommon.contract.wire import DeltaNetmap, FullNetmap, NodeView

NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")

Answer = FullNetmap[msgspec.Raw] | DeltaNetmap[msgspec.Raw]
Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadNetmap(ValueError):
    """The answer as a whole is unusable (not just one entry)."""


@dataclass(frozen=True)
class Received:
    """The netmap as received, deltas folded in: the last answer's header and every raw peer entry."""

    revision: int
    mesh_prefix: str
    me: NodeView
    entries: Mapping[str, msgspec.Raw] = field(default_factory=dict)  # node id -> entry as sent
    # node id -> (entry, its check), carried from map to map: a revision's map is checked whole, and
    # between two revisions nearly every entry is the same bytes, checked once (never more than the
    # map has entries: `netmap_of` drops those it no longer holds).
    checked: dict[str, tuple[bytes, NodeView | None, str | None]] = field(
        default_factory=dict, compare=False, repr=False)


class _Keyed(msgspec.Struct):
    node_id: str


def node_id_of(entry: msgspec.Raw) -> str | None:
    """The node id an entry is filed under, or None for an entry that names none (dropped)."""
    try:
        return msgspec.json.decode(entry, type=_Keyed).node_id
    except msgspec.DecodeError:
        return None


def fold(entries: Mapping[str, msgspec.Raw], answer: Answer) -> dict[str, msgspec.Raw]:
    """The raw peer entries after one answer: a full map replaces them, a delta patches them."""
    if isinstance(answer, FullNetmap):
        merged: dict[str, msgspec.Raw] = {}
        changed = answer.peers
    else:
        merged = dict(entries)
        for node_id in answer.removed:
            merged.pop(node_id, None)
        changed = answer.upserted
    for entry in changed:
        key = node_id_of(entry)
        if key is not None:
            merged[key] = entry
    return merged


def receive(received: Received | None, answer: Answer) -> Received:
    """The map after `answer`: its header, and the entries folded into those received before. A delta
    must continue the map held (its `since` is the held revision): one that does not is refused
    (BadNetmap), since what changed in between is unknown; after a refused answer the control plane's
    next delta continues a map this node does not hold."""
    if isinstance(answer, DeltaNetmap):
        held = received.revision if received is not None else None
        if answer.since != held:
            raise BadNetmap(f"a delta since revision {answer.since} does not continue the map held "
                            f"(revision {held})")
    before = received.entries if received is not None else {}
    checked = received.checked if received is not None else {}
    return Received(answer.revision, answer.mesh_prefix, answer.self, fold(before, answer), checked)


def check_node(node: NodeView, prefix: Prefix) -> tuple[NodeView | None, str | None]:
    """The node as the agent may use it (mesh IP normalised, name made safe), or why it is refused."""
    if not node.node_id:
        return None, "no node_id"
    if not keys.is_valid_public_key(node.public_key):
        return None, "invalid public key"
    try:
        ip = ipaddress.ip_address(node.mesh_ip)
    except ValueError:
        return None, "invalid mesh IP"
    if ip not in prefix or ip in (prefix.network_address, prefix.broadcast_address):
        return None, f"mesh IP {ip} outside {prefix}"
    for endpoint in (node.endpoint, node.reflexive_endpoint):
        if endpoint is not None:
            try:
                address, _ = endpoints.parse(endpoint)
            except endpoints.BadEndpoint as exc:
                return None, str(exc)
            if address in prefix:  # the tunnel's packets would be sent into the tunnel
                return None, f"endpoint {endpoint} is a mesh IP"
    name = node.name if NAME.fullmatch(node.name) else "?"
    return msgspec.structs.replace(node, name=name, mesh_ip=str(ip)), None


def check_entry(entry: msgspec.Raw, prefix: Prefix) -> tuple[NodeView | None, str | None]:
    """One raw peer entry as a checked NodeView, or the reason it is refused."""
    try:
        node = msgspec.json.decode(entry, type=NodeView)
    except msgspec.DecodeError as exc:
        return None, f"malformed entry: {exc}"
    return check_node(node, prefix)


def _checked(received: Received, node_id: str, prefix: Prefix) -> tuple[NodeView | None, str | None]:
    entry = bytes(received.entries[node_id])
    hit = received.checked.get(node_id)
    if hit is not None and hit[0] == entry:
        return hit[1], hit[2]
    peer, reason = check_entry(msgspec.Raw(entry), prefix)
    received.checked[node_id] = (entry, peer, reason)
    return peer, reason


def netmap_of(received: Received) -> Netmap:
    """The validated Netmap of what was received; BadNetmap when this node itself is described badly."""
    try:
        prefix = ipaddress.ip_network(received.mesh_prefix, strict=True)
    except ValueError as exc:
        raise BadNetmap(f"netmap without a usable mesh prefix: {exc}") from None
    me, reason = check_node(received.me, prefix)
    if me is None:
        raise BadNetmap(f"netmap describes this node badly: {reason}")
    peers, rejected = [], []
    ips_taken, keys_taken = {me.mesh_ip: me.node_id}, {me.public_key: me.node_id}
    for node_id in received.checked.keys() - received.entries.keys():
        del received.checked[node_id]
    for node_id in sorted(received.entries):
        peer, reason = _checked(received, node_id, prefix)
        if peer is None:
            rejected.append((node_id, reason or "refused"))
        elif peer.node_id == me.node_id:
            continue
        elif peer.mesh_ip in ips_taken:
            rejected.append((peer.node_id, f"duplicate mesh IP {peer.mesh_ip} (also {ips_taken[peer.mesh_ip]})"))
        elif peer.public_key in keys_taken:
            rejected.append((peer.node_id, f"duplicate public key (also {keys_taken[peer.public_key]})"))
        else:
            ips_taken[peer.mesh_ip] = peer.node_id
            keys_taken[peer.public_key] = peer.node_id
            peers.append(peer)
    return Netmap(received.revision, str(prefix), me, tuple(peers), tuple(rejected))


def without_peers(received: Received) -> Received:
    """The same map with every peer gone: what is left when this node was removed from the mesh."""
    return replace(received, entries={})


class _Header(msgspec.Struct):
    revision: int
    mesh_prefix: str
    self: NodeView


class _Cached(msgspec.Struct):
    header: _Header
    entries: dict[str, msgspec.Raw]


def cache_bytes(received: Received) -> bytes:
    """`netmap.json`: the map as received, so a restart applies exactly what was applied before."""
    header = _Header(received.revision, received.mesh_prefix, received.me)
    return msgspec.json.encode(_Cached(header, dict(received.entries)))


def from_cache(data: bytes) -> Received:
    try:
        cached = msgspec.json.decode(data, type=_Cached)
    except msgspec.DecodeError as exc:
        raise BadNetmap(f"unreadable netmap cache: {exc}") from None
    return Received(cached.header.revision, cached.header.mesh_prefix, cached.header.self, cached.entries)
