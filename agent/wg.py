"""Subprocess wrappers for wg(8) and wireguard-go: argument lists, never a shell.

Owns talking to WireGuard tools and parsing `wg show IFACE dump`. Errors carry the tool's own
message. Must not decide anything: callers say what to run.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from agent.model import PeerStats, WgPeer


class WgError(RuntimeError):
    pass


def run(args: list[str], input_text: str | None = None, timeout: float = 15) -> str:
    try:
        done = subprocess.run(args, input=input_text, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise WgError(f"{args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise WgError(f"{' '.join(args[:3])} timed out") from None
    if done.returncode != 0:
        raise WgError(f"{' '.join(args[:3])}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def genkey() -> str:
    return run(["wg", "genkey"]).strip()


@dataclass(frozen=True)
class Dump:
    listen_port: int | None
    public_key: str | None
    peers: tuple[WgPeer, ...]
    stats: tuple[PeerStats, ...]


def parse_dump(text: str) -> Dump:
    """Parse `wg show IFACE dump` (tab separated; first line is the interface)."""
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines:
        return Dump(None, None, (), ())
    head = lines[0]
    peers, stats = [], []
    for fields in lines[1:]:
        key, _psk, shown, allowed, handshake, rx, tx, keepalive = fields[:8]
        endpoint = None if shown == "(none)" else shown
        ips = tuple(sorted(ip for ip in allowed.split(",") if ip and ip != "(none)"))
        peers.append(WgPeer(key, ips, endpoint, 0 if keepalive == "off" else int(keepalive)))
        stats.append(PeerStats(key, endpoint, int(handshake), int(rx), int(tx)))
    return Dump(int(head[2]) if head[2].isdigit() else None, head[1] if head[1] != "(none)" else None,
                tuple(peers), tuple(stats))


def show_dump(interface: str) -> Dump:
    return parse_dump(run(["wg", "show", interface, "dump"]))


def peer_stats(interface: str) -> tuple[PeerStats, ...]:
    """WireGuard's counters for the interface's peers; none when it (or wg) is not there."""
    try:
        return show_dump(interface).stats
    except WgError:
        return ()


def syncconf(interface: str, path: str) -> None:
    run(["wg", "syncconf", interface, path])


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
