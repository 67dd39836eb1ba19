"""Talking to WireGuard: wireguard-go's UAPI socket and the kernel's generic netlink.

Owns the I/O with WireGuard. Reading never forks: a userspace interface (wireguard-go) is read on
its UAPI socket (`/var/run/wireguard/IFACE.sock`, the protocol is `uapi`'s), a kernel one over
generic netlink (pyroute2's `WireGuard`), the socket first as wg(8) does. Writing: `Uapi` sends one
`set=1` request at a time and reads its `errno`; `Netlink` sends the kernel one generic netlink
request at a time (`genl`'s), each acknowledged. `wireguard-go` itself is run as a subprocess
(an argument list, never a shell). Errors carry the tool's or the protocol's own words. Must not decide anything:
callers say what to read or write.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from agent.core import uapi
from agent.core.model import PeerStats, WgDevice, WgPeer

SOCKET_DIR = Path("/var/run/wireguard")  # where wireguard-go (and wg(8)) put UAPI sockets
UAPI_TIMEOUT = 5.0  # seconds for one UAPI request


class WgError(RuntimeError):
    pass


def socket_path(interface: str) -> Path:
    return SOCKET_DIR / f"{interface}.sock"


class Uapi:
    """One connection to a wireguard-go interface's UAPI socket, opened on first use. After a
    failed request the connection is dropped (wireguard-go stops reading a request at its first
    error, so the rest of it would be taken for the next one); the next request opens another."""

    def __init__(self, interface: str):
        self.path = socket_path(interface)
        self.sock: socket.socket | None = None

    def _ask(self, request: bytes) -> str:
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(UAPI_TIMEOUT)
                self.sock.connect(str(self.path))
            self.sock.sendall(request)
            answer = bytearray()
            while not answer.endswith(b"\n\n"):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise WgError(f"{self.path}: connection closed mid-answer")
                answer += chunk
            return answer.decode()
        except OSError as exc:
            self.close()
            raise WgError(f"{self.path}: {exc.strerror or exc}") from None
        except WgError:
            self.close()
            raise

    def get(self) -> WgDevice:
        try:
            return uapi.parse_get(self._ask(uapi.GET))
        except uapi.BadAnswer as exc:
            self.close()
            raise WgError(f"{self.path}: {exc}") from None

    def set(self, request: bytes) -> None:
        """Send one `set=1` request; WgError with the errno's meaning unless WireGuard took it."""
        try:
            code = uapi.errno_of(self._ask(request))
        except uapi.BadAnswer as exc:
            self.close()
            raise WgError(f"{self.path}: {exc}") from None
        if code != 0:
            self.close()
            raise WgError(f"UAPI set: errno={code} ({os.strerror(abs(code))})")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Uapi:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def device_of_netlink(messages) -> WgDevice:
    """The kernel's answer to WG_CMD_GET_DEVICE (pyroute2 `wgmsg`s: one device, its peers spread
    over the messages of the dump, a peer with many allowed IPs continued in the next) as a device."""
    listen_port = public_key = None
    peers: dict[str, tuple[WgPeer, PeerStats]] = {}
    for msg in messages:
        listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT", listen_port)
        key = msg.get_attr("WGDEVICE_A_PUBLIC_KEY")
        public_key = key.decode() if key else public_key
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            name = peer.get_attr("WGPEER_A_PUBLIC_KEY").decode()
            found = peer.get_attr("WGPEER_A_ENDPOINT")
            endpoint = None if not found else (
                f"[{found['addr']}]:{found['port']}" if ":" in found["addr"] else f"{found['addr']}:{found['port']}")
            handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            ips = tuple(ip.get("addr") for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or () if ip.get("addr"))
            before = peers.get(name)
            if before is not None:  # continued from the previous message: more allowed IPs
                ips = before[0].allowed_ips + ips
                endpoint = before[0].endpoint
            stats = PeerStats(name, endpoint, handshake["tv_sec"] if handshake else 0,
                              peer.get_attr("WGPEER_A_RX_BYTES") or 0, peer.get_attr("WGPEER_A_TX_BYTES") or 0)
            keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0
            peers[name] = (WgPeer(name, tuple(sorted(ips)), endpoint, keepalive), before[1] if before else stats)
    return WgDevice(listen_port, public_key, tuple(p for p, _ in peers.values()), tuple(s for _, s in peers.values()))


def kernel_device(interface: str) -> WgDevice | None:
    """A kernel WireGuard interface over generic netlink (None: there is none by that name)."""
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic.wireguard import WireGuard
    try:
        with WireGuard() as wg:
            return device_of_netlink(wg.info(interface))
    except NetlinkError:
        return None
    except OSError as exc:  # no wireguard module: no generic netlink family to ask
        raise WgError(f"generic netlink: {exc}") from None


def device(interface: str) -> WgDevice | None:
    """What WireGuard has for `interface`, without a subprocess: its UAPI socket when wireguard-go
    serves one, else the kernel's; None when neither knows it."""
    if socket_path(interface).exists():
        with Uapi(interface) as connection:
            return connection.get()
    return kernel_device(interface)


def peer_stats(interface: str) -> tuple[PeerStats, ...]:
    """WireGuard's counters for the interface's peers; none when it is not there."""
    with contextlib.suppress(WgError):
        found = device(interface)
        return found.stats if found else ()
    return ()


class Netlink:
    """One generic netlink socket to the kernel's WireGuard, opened on first use (a userspace
    backend never opens it)."""

    def __init__(self, interface: str):
        self.interface = interface
        self.sock: Any = None  # pyroute2's WireGuard (imported on first use)

    def set(self, request: dict) -> None:
        """Send one WG_CMD_SET_DEVICE (`genl`'s arguments); WgError with the kernel's words unless it took it."""
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.generic.wireguard import WireGuard
        try:
            if self.sock is None:
                self.sock = WireGuard()
            self.sock.set(self.interface, **request)
        except NetlinkError as exc:
            raise WgError(f"netlink set: {os.strerror(exc.code) if exc.code else exc}") from None
        except OSError as exc:  # no wireguard module: no generic netlink family to ask
            self.close()
            raise WgError(f"generic netlink: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_userspace(interface: str, log_path: str) -> None:
    """Start wireguard-go for `interface`. It daemonizes (in a session of its own), so the data
    plane outlives the agent; its output goes to a file because the daemon keeps inherited pipes open."""
    with open(log_path, "ab") as log:
        try:
            # Its own session: stopping the agent's process group must not stop the data plane.
            done = subprocess.run(["wireguard-go", interface], stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log, timeout=30, start_new_session=True)
        except FileNotFoundError:
            raise WgError("wireguard-go is not installed") from None
    if done.returncode != 0:
        raise WgError(f"wireguard-go {interface} failed (exit {done.returncode}); see {log_path}")
