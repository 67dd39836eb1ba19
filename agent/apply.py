"""Apply: carry out a Plan on the system, idempotently, and report each step reached or failed.

Owns every change the agent makes to interfaces, addresses, routes and WireGuard peers (and the
choice of backend), and the count of those writes (`Writes`). WireGuard gets only what the plan
names, one request per added, updated or removed peer (and the key or port when they differ): a
UAPI `set=1` on wireguard-go, a generic netlink WG_CMD_SET_DEVICE on the kernel. A peer WireGuard
refuses fails alone; the others apply. "Already there" and
"already gone" are success. Additions happen before removals (peers and routes added, then peers
and routes removed), so a change never leaves a gap. A failing step is recorded and the others
still run; the next pass repairs what is left. Must not decide what to change: `diff` does.
"""
from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent import wg
from agent.core import genl, uapi
from agent.core.model import Applied, DesiredState, Failure, Plan, Step, StepKind, WgPeer
from agent.observe import ROUTE_PROTO, link_index

CONVERGED = {errno.EEXIST, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENOENT}
DISCARD_PORT = 9


def split(prefix: str) -> tuple[str, int]:
    address, _, length = prefix.partition("/")
    return address, int(length)


def detect_backend(preference: str, interface: str) -> str:
    """'kernel' when the host's WireGuard module works (or is demanded), else 'userspace'."""
    if preference in ("kernel", "userspace"):
        return preference
    probe = f"mvprobe{int(time.time() * 1000) % 100000}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=probe, kind="wireguard")
        except NetlinkError:
            return "userspace"
        ipr.link("del", ifname=probe)
    return "kernel"


def create_interface(ipr: IPRoute, interface: str, backend: str, wg_log: str) -> None:
    if backend == "kernel":
        ipr.link("add", ifname=interface, kind="wireguard")
    else:
        wg.start_userspace(interface, wg_log)
    for _ in range(50):
        if link_index(ipr, interface) is not None:
            return
        time.sleep(0.1)
    raise wg.WgError(f"interface {interface} did not appear")


@dataclass
class Writes:
    """How many writes the agent has made, counted in memory: to WireGuard (a UAPI `set=1` or a
    generic netlink request, starting wireguard-go) and over rtnetlink (a link, address or route change).
    Every write attempted counts, whether it took or failed."""

    wireguard: int = 0
    netlink: int = 0


class Steps:
    """The steps of one apply as they are reached or fail, and the writes they made."""

    def __init__(self, writes: Writes) -> None:
        self.writes = writes
        self.done: list[Step] = []
        self.failed: list[Failure] = []

    def netlink(self, step: Step, fn: Callable, *args, **kwargs) -> bool:
        self.writes.netlink += 1
        return self._run(step, fn, *args, **kwargs)

    def wireguard(self, step: Step, fn: Callable, *args, **kwargs) -> bool:
        self.writes.wireguard += 1
        return self._run(step, fn, *args, **kwargs)

    def _run(self, step: Step, fn: Callable, *args, **kwargs) -> bool:
        """Run one step. Netlink saying it is already so is success (nothing was done); any other
        netlink or WireGuard error, or a value WireGuard cannot take, is the step's failure. True
        unless it failed."""
        try:
            fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code in CONVERGED:
                return True
            self.failed.append(Failure(step, str(exc)))
            return False
        except (wg.WgError, ValueError) as exc:
            self.failed.append(Failure(step, str(exc)))
            return False
        self.done.append(step)
        return True

    def result(self) -> Applied:
        return Applied(tuple(self.done), tuple(self.failed))


class Requests:
    """One backend's requests, each sent on its own connection: (builder module, connection)."""

    def __init__(self, protocol, connection: wg.Uapi | wg.Netlink):
        self.protocol, self.connection = protocol, connection

    def device(self, private_key: str | None, listen_port: int | None) -> None:
        self.connection.set(self.protocol.set_device(private_key, listen_port))

    def peer(self, peer: WgPeer) -> None:
        self.connection.set(self.protocol.set_peer(peer))

    def remove(self, public_key: str) -> None:
        self.connection.set(self.protocol.remove_peer(public_key))


def add_peers(steps: Steps, requests: Requests, plan: Plan, interface: str, private_key: str) -> None:
    """The key and port if they differ, then each added and each updated peer: one request each."""
    if plan.set_private_key or plan.listen_port is not None:
        steps.wireguard(Step(StepKind.DEVICE_SET, interface), requests.device,
                        private_key if plan.set_private_key else None, plan.listen_port)
    for peer in plan.peers_added:
        steps.wireguard(Step(StepKind.PEER_ADDED, peer.public_key), requests.peer, peer)
    for _, peer in plan.peers_updated:
        steps.wireguard(Step(StepKind.PEER_UPDATED, peer.public_key), requests.peer, peer)


def remove_peers(steps: Steps, requests: Requests, plan: Plan) -> None:
    for peer in plan.peers_removed:
        steps.wireguard(Step(StepKind.PEER_REMOVED, peer.public_key), requests.remove, peer.public_key)


def apply(plan: Plan, desired: DesiredState, *, backend: str, private_key: str, wg_log: str,
          writes: Writes) -> Applied:
    """Carry out `plan`. WireGuard is written peer by peer: over UAPI (wireguard-go), or over generic
    netlink (the kernel)."""
    steps = Steps(writes)
    interface = desired.interface
    with IPRoute() as ipr, wg.Uapi(interface) as connection, wg.Netlink(interface) as kernel:
        requests = Requests(genl, kernel) if backend == "kernel" else Requests(uapi, connection)
        if plan.create_interface:
            create = steps.netlink if backend == "kernel" else steps.wireguard
            if not create(Step(StepKind.INTERFACE_CREATED, interface), create_interface, ipr, interface, backend,
                          wg_log):
                return steps.result()
        index = link_index(ipr, interface)
        if index is None:
            steps.failed.append(Failure(Step(StepKind.INTERFACE_FOUND, interface), "the interface is gone"))
            return steps.result()
        for prefix in sorted(plan.add_addresses):
            address, length = split(prefix)
            steps.netlink(Step(StepKind.ADDRESS_ADDED, prefix), ipr.addr, "add", index=index, address=address,
                          prefixlen=length)
        if plan.set_up or plan.create_interface:
            steps.netlink(Step(StepKind.LINK_UP, interface), ipr.link, "set", index=index, state="up")
        add_peers(steps, requests, plan, interface, private_key)
        for prefix in sorted(plan.add_routes):
            steps.netlink(Step(StepKind.ROUTE_ADDED, prefix), ipr.route, "replace", dst=prefix, oif=index,
                          proto=ROUTE_PROTO)
        remove_peers(steps, requests, plan)
        for prefix in sorted(plan.remove_routes):
            steps.netlink(Step(StepKind.ROUTE_REMOVED, prefix), ipr.route, "del", dst=prefix, oif=index,
                          proto=ROUTE_PROTO)
        for prefix in sorted(plan.remove_addresses):
            address, length = split(prefix)
            steps.netlink(Step(StepKind.ADDRESS_REMOVED, prefix), ipr.addr, "del", index=index, address=address,
                          prefixlen=length)
    return steps.result()


def nudge(mesh_ips: list[str]) -> None:
    """Send one empty UDP datagram to each peer's mesh IP (the discard port): traffic for a peer makes
    WireGuard start a handshake at once, to the endpoint just written, instead of at its next
    keepalive. Best effort: a send that fails changes nothing."""
    for ip in mesh_ips:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(b"", (ip, DISCARD_PORT))


def remove_interface(interface: str) -> bool:
    """Delete the interface (a userspace one's wireguard-go exits with it). True if it existed."""
    with IPRoute() as ipr:
        index = link_index(ipr, interface)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code not in CONVERGED:
                raise
        return True
