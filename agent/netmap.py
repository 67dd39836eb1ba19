"""Netmap intake: validate what the control plane sent and fold deltas into the current map.

Pure. An entry with an invalid or low-order key, a mesh IP outside the mesh prefix, an endpoint
that is not a numeric unicast IP:PORT (`meshcommon.endpoint`) or a duplicate mesh IP or public key is
rejected here (reported, never raised) and so can never reach `wg`: one bad peer never delays
or blocks the others. Owns the agent's view of the wire format of `GET /v1/netmap`.
"""
from __future__ import annotations

import ipaddress
import re

from agent.model import Netmap, PeerInfo
from meshcommon import endpoint as endpoints
from meshcommon import keys

NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")


class BadNetmap(ValueError):
    """The answer as a whole is unusable (not just one entry)."""


def check_entry(entry: object, prefix) -> tuple[PeerInfo | None, str | None]:
    """One netmap entry as a PeerInfo, or the reason it is refused."""
    if not isinstance(entry, dict):
        return None, "not an object"
    node_id = entry.get("node_id")
    if not isinstance(node_id, str) or not node_id:
        return None, "no node_id"
    if not keys.is_valid_public_key(entry.get("public_key")):
        return None, "invalid public key"
    try:
        ip = ipaddress.ip_address(entry.get("mesh_ip"))
    except ValueError:
        return None, "invalid mesh IP"
    if ip not in prefix or ip in (prefix.network_address, prefix.broadcast_address):
        return None, f"mesh IP {ip} outside {prefix}"
    endpoint = entry.get("endpoint")
    if endpoint is not None:
        try:
            endpoints.parse(endpoint)
        except endpoints.BadEndpoint as exc:
            return None, str(exc)
    name = entry.get("name")
    safe_name = name if isinstance(name, str) and NAME.fullmatch(name) else "?"
    return PeerInfo(node_id, safe_name, str(ip), entry["public_key"], endpoint, bool(entry.get("online"))), None


def parse(answer: dict, entries: dict[str, dict]) -> Netmap:
    """Build a validated Netmap from the raw peer entries (node id -> entry) and the answer's header."""
    try:
        prefix = ipaddress.ip_network(answer["mesh_prefix"], strict=True)
        revision = int(answer["revision"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadNetmap(f"netmap without a usable revision or mesh prefix: {exc}") from None
    me, reason = check_entry(answer.get("self"), prefix)
    if me is None:
        raise BadNetmap(f"netmap describes this node badly: {reason}")
    peers, rejected, taken = [], [], {me.mesh_ip: me.node_id}
    keys_taken = {me.public_key: me.node_id}
    for node_id in sorted(entries):
        peer, reason = check_entry(entries[node_id], prefix)
        if peer is None:
            rejected.append((str(node_id), reason))
        elif peer.node_id == me.node_id:
            continue
        elif peer.mesh_ip in taken:
            rejected.append((peer.node_id, f"duplicate mesh IP {peer.mesh_ip} (also {taken[peer.mesh_ip]})"))
        elif peer.public_key in keys_taken:
            rejected.append((peer.node_id, f"duplicate public key (also {keys_taken[peer.public_key]})"))
        else:
            taken[peer.mesh_ip] = peer.node_id
            keys_taken[peer.public_key] = peer.node_id
            peers.append(peer)
    return Netmap(revision, str(prefix), me, tuple(peers), tuple(rejected))


def fold(entries: dict[str, dict], answer: dict) -> dict[str, dict]:
    """The raw peer entries after one answer: a full map replaces them, a delta patches them."""
    if not answer.get("delta"):
        return {p["node_id"]: p for p in answer.get("peers", []) if isinstance(p, dict) and "node_id" in p}
    merged = dict(entries)
    for node_id in answer.get("removed", []):
        merged.pop(node_id, None)
    for peer in answer.get("upserted", []):
        if isinstance(peer, dict) and "node_id" in peer:
            merged[peer["node_id"]] = peer
    return merged
