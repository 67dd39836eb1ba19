"""Test support: what the control plane sends (netmap entries and answers, registrations), from plain values."""
from __future__ import annotations

import msgspec

from agent.core import intake
from agent.core.model import Identity, Netmap
from meshcommon.contract import keys, wire

PREFIX = "100.64.0.0/10"


def key() -> str:
    """A usable WireGuard public key."""
    return keys.public_key_of(keys.new_private_key())


def entry(node_id: str, ip: str, online: bool = True, **extra) -> dict:
    return {"node_id": node_id, "name": node_id, "mesh_ip": ip, "public_key": key(),
            "endpoint": f"10.9.0.{ip.rsplit('.', 1)[-1][-3:]}:51820", "listen_port": 51820, "online": online, **extra}


ME = entry("me", "100.64.0.1")


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


def received(entries: dict[str, object], revision: int = 5, me: dict = ME, prefix: str = PREFIX) -> intake.Received:
    """What intake holds after answers whose peers were `entries` (node id -> entry, any JSON value)."""
    return intake.Received(revision, prefix, msgspec.convert(me, wire.NodeView),
                           {node_id: raw(value) for node_id, value in entries.items()})


def netmap(entries: dict[str, object], revision: int = 5, me: dict = ME, prefix: str = PREFIX) -> Netmap:
    return intake.netmap_of(received(entries, revision, me, prefix))


def full(revision: int, peers: list, me: dict = ME, prefix: str = PREFIX) -> intake.Answer:
    """A full netmap answer, decoded as the client decodes it."""
    return wire.decode_netmap_entries(msgspec.json.encode(
        {"revision": revision, "mesh_prefix": prefix, "self": me, "peers": peers, "delta": False}))


def delta(revision: int, since: int, upserted: list, removed: list[str], me: dict = ME,
          prefix: str = PREFIX) -> intake.Answer:
    return wire.decode_netmap_entries(msgspec.json.encode(
        {"revision": revision, "since": since, "mesh_prefix": prefix, "self": me, "upserted": upserted,
         "removed": removed, "delta": True}))


def decoded(entries: dict[str, msgspec.Raw]) -> dict[str, object]:
    return {node_id: msgspec.json.decode(value) for node_id, value in entries.items()}


def registered(node_id: str = "me", token: str = "mvn_node", mesh_ip: str = "100.64.0.1") -> wire.Registered:
    return wire.Registered(node_id=node_id, name="alpha", mesh_ip=mesh_ip, mesh_prefix="100.64.0.0/10",
                           node_token=token, heartbeat_interval=2.0, offline_after=6.0, revision=1)


def identity(offline_after: float = 6.0) -> Identity:
    """The identity `registered()` gives a node whose control plane is http://control.test."""
    fields = {**msgspec.structs.asdict(registered()), "offline_after": offline_after}
    return Identity(**fields, control_urls=["http://control.test"])
