"""Lab hosts for integration tests: network namespaces on a private bridge, each process run
with its own mount namespace so wireguard-go's /run/wireguard is private to the host.

Layout: a switch namespace holds a bridge; every lab host gets a veth on it and an
address in a /24 of 10.213.0.0/16 chosen per lab; the root namespace gets one too,
so a control plane started by the test listens on that lab address. Only these
addresses (and loopback) ever receive traffic. Everything is removed on close.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def can_run() -> str | None:
    """Why lab tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "wg", "wireguard-go", "unshare", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-packages)"
    return None


@dataclass
class Host:
    name: str
    netns: str
    address: str
    init: subprocess.Popen | None = None

    def boot(self) -> None:
        """Start the host's init: it holds a mount namespace with a private /run/wireguard."""
        script = ('mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && '
                  'exec ip netns exec "$0" sleep infinity')
        self.init = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                      self.netns], start_new_session=True)
        for _ in range(100):  # the mount is in place once init runs sleep
            try:
                if Path(f"/proc/{self.init.pid}/cmdline").read_bytes().startswith(b"sleep"):
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"lab host {self.name} did not boot")

    def prefix(self) -> list[str]:
        """Run a command as this host: its network and mount namespaces."""
        return ["nsenter", "--target", str(self.init.pid), "--mount", "--net", "--"]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix() + list(args), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def popen(self, args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "ab") as handle:  # the child keeps its own descriptor
            return subprocess.Popen(self.prefix() + args, stdout=handle, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, start_new_session=True)

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(pid) for pid in out.split()]

    def crash(self) -> None:
        """kill -9 every process of the host but init (its agent and wireguard-go: the interface goes too)."""
        for pid in self.pids():
            if self.init is not None and pid == self.init.pid:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wg_peers(self, interface: str = "mesh0") -> dict[str, str]:
        """public key -> allowed IPs, as WireGuard has them now ({} without the interface)."""
        done = self.run("wg", "show", interface, "allowed-ips", check=False)
        if done.returncode != 0:
            return {}
        return dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)

    def routes(self, interface: str = "mesh0") -> set[str]:
        done = self.run("ip", "-4", "route", "show", "dev", interface, "proto", "77", check=False)
        found = (line.split()[0] for line in done.stdout.splitlines() if line.strip())
        return {dst if "/" in dst else f"{dst}/32" for dst in found}

    def ping(self, address: str, count: int = 3, interval: float = 0.2, wait: float = 1) -> subprocess.CompletedProcess:
        return self.run("ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), address,
                        check=False, timeout=count * interval + wait + 30)


NEIGHBOUR_KNOBS = [f"/proc/sys/net/{family}/neigh/default/gc_thresh{n}" for family in ("ipv4", "ipv6")
                   for n in (1, 2, 3)]


def neighbour_room(hosts: int) -> dict[str, int]:
    """Neighbour (ARP/ND) table thresholds for `hosts` lab hosts on one bridge. The table is the
    kernel's, shared by every namespace, and 1024 entries by default: N hosts that all talk to
    each other need about N^2 entries, so past ~30 hosts they vanish ("neighbor table overflow")."""
    hard = max(1024, 4 * hosts * hosts)
    return {knob: (hard // 8 if knob.endswith("1") else hard // 2 if knob.endswith("2") else hard)
            for knob in NEIGHBOUR_KNOBS}


def lift_neighbour_limits(hosts: int) -> None:
    """Raise (never lower) the kernel's neighbour table thresholds to fit `hosts` lab hosts."""
    for knob, wanted in neighbour_room(hosts).items():
        path = Path(knob)
        if path.exists() and int(path.read_text()) < wanted:
            path.write_text(f"{wanted}\n")


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: f"{random.randrange(16 ** 4):04x}")
    subnet: int = field(default_factory=lambda: random.randrange(1, 250))
    hosts: list[Host] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"mvt{self.tag}sw"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the lab bridge (the control plane listens here)."""
        return f"10.213.{self.subnet}.254"

    def __enter__(self) -> Lab:
        sh("ip", "netns", "add", self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        root = f"mvt{self.tag}r"
        sh("ip", "link", "add", root, "type", "veth", "peer", "name", "r", "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", "r", "master", "br0", "up")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", root)
        sh("ip", "link", "set", root, "up")
        return self

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        lift_neighbour_limits(index + 1)  # every host, and the root namespace's address
        host = Host(name, f"mvt{self.tag}{name}", f"10.213.{self.subnet}.{index}")
        sh("ip", "netns", "add", host.netns)
        sh("ip", "-n", host.netns, "link", "add", "eth0", "type", "veth", "peer", "name", f"h{index}",
           "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", f"h{index}", "master", "br0", "up")
        sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        host.boot()
        self.hosts.append(host)
        return host

    def __exit__(self, *exc) -> None:
        for host in self.hosts:
            host.crash()
            if host.init is not None:
                host.init.kill()
                host.init.wait()
        time.sleep(0.2)
        for host in self.hosts:
            sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "link", "del", f"mvt{self.tag}r", check=False)
        sh("ip", "netns", "del", self.switch, check=False)
