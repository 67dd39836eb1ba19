"""Apply: carry out a Plan on the system, idempotently, and report what was reached.

"Already there" and "already gone" are success. Additions happen before
removals, so a change of address or route never leaves a gap. A failing step
is recorded and the others still run; the next pass repairs what is left.
"""
from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute, NetlinkError

from agent import wg
from agent.model import DesiredState, Plan
from agent.observe import ROUTE_PROTO, link_index

CONVERGED = {errno.EEXIST, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENOENT}


@dataclass
class Applied:
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


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


def _netlink(result: Applied, step: str, fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
        result.done.append(step)
    except NetlinkError as exc:
        if exc.code not in CONVERGED:
            result.errors.append(f"{step}: {exc}")


def apply(plan: Plan, desired: DesiredState, conf_path: str, backend: str, wg_log: str) -> Applied:
    result = Applied()
    with IPRoute() as ipr:
        if plan.create_interface:
            try:
                create_interface(ipr, desired.interface, backend, wg_log)
                result.done.append(f"interface_created:{backend}")
            except (wg.WgError, NetlinkError) as exc:
                result.errors.append(f"create {desired.interface}: {exc}")
                return result
        index = link_index(ipr, desired.interface)
        if index is None:
            result.errors.append(f"interface {desired.interface} is gone")
            return result
        for prefix in sorted(plan.add_addresses):
            address, length = split(prefix)
            _netlink(result, f"address_added:{prefix}", ipr.addr, "add", index=index, address=address,
                     prefixlen=length)
        if plan.set_up or plan.create_interface:
            _netlink(result, "link_up", ipr.link, "set", index=index, state="up")
        if plan.sync_wireguard:
            try:
                wg.syncconf(desired.interface, conf_path)
                result.done.append("wireguard_synced")
            except wg.WgError as exc:
                result.errors.append(f"wg syncconf: {exc}")
        for prefix in sorted(plan.add_routes):
            _netlink(result, f"route_added:{prefix}", ipr.route, "replace", dst=prefix, oif=index,
                     proto=ROUTE_PROTO)
        for prefix in sorted(plan.remove_routes):
            _netlink(result, f"route_removed:{prefix}", ipr.route, "del", dst=prefix, oif=index,
                     proto=ROUTE_PROTO)
        for prefix in sorted(plan.remove_addresses):
            address, length = split(prefix)
            _netlink(result, f"address_removed:{prefix}", ipr.addr, "del", index=index, address=address,
                     prefixlen=length)
    return result


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
