"""Lab hosts for integration tests: network namespaces on a private bridge, each process run
with its own mount namespace so wireguard-go's /run/wireguard is private to the host.

Layout: a switch namespace holds the public bridge; every public lab host gets a veth on it
and an address in 10.213.S.0/24, S chosen per lab (`free_subnet`: one no lab on this machine
uses, nor one the Ansible labs keep);
public hosts are .1-.199 in the order they were added, the root namespace is .254, so a
control plane started by the test listens on that lab address.

Sites (`add_site`): the i-th site (i = 1..42) is a router namespace with `wan` = 10.213.S.(200+i)
on the public bridge and a LAN bridge `lan` = 10.(213+i).S.254/24 for its hosts (a site host
is 10.(213+i).S.N, N its place among all hosts, with a default route via .254). A routed
site's router only forwards: the root namespace, every public host and every other router
get a route to its LAN via its wan. A NAT site's router masquerades out of wan with the
nftables table of roles/meshvpn_lab (one definition for both labs): nobody outside gets a
route into it, and others see its hosts as the router's wan address (`seen_as`).

Only these addresses (and loopback) ever receive traffic: no namespace has a default route
out of the lab. Everything is removed on close. Owns the lab's namespaces, links, routes and
nftables tables; must not touch anything else of the machine.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from testbed import nft
from testbed.nft import cut_ruleset

SiteKind = Literal["routed", "nat"]
MAX_SITES = 42  # routers are .201-.242 of the public /24, site LANs 10.214-10.255
# The fixed subnets of the Ansible labs (`make up`, molecule's default and ha, a scratch lab, the demo): one of them
# can be up while tests run, and a lab on the same /24 would route its gateway into the other lab.
KEPT_SUBNETS = frozenset({77, 78, 79, 88, 90})


def sh(*args: str, check: bool = True, timeout: float = 30, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout, input=stdin)


def site_lan(subnet: int, index: int) -> str:
    """The LAN (a /24) of the index-th site (from 1) of the lab whose public /24 is 10.213.`subnet`.0/24."""
    if not 1 <= index <= MAX_SITES:
        raise ValueError(f"a lab has sites 1..{MAX_SITES}, not {index}")
    return f"10.{213 + index}.{subnet}.0/24"


def can_run() -> str | None:
    """Why lab tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "wg", "wireguard-go", "unshare", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-packages)"
    return None


@dataclass
class Site:
    """A site behind a router: `routed` (plain forwarding) or `nat` (a masquerading home router)."""
    name: str
    kind: SiteKind
    netns: str  # the router's
    wan: str  # the router's address on the public bridge
    lan: str  # the site's /24

    @property
    def router(self) -> str:
        """The router's address on the site's LAN: its hosts' default gateway."""
        return self.address(254)

    def address(self, number: int) -> str:
        return f"{self.lan.rsplit('.', 1)[0]}.{number}"


@dataclass
class Host:
    name: str
    netns: str
    address: str
    init: subprocess.Popen | None = None
    site: Site | None = None  # None: on the public bridge

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
        return self.wg_allowed_ips(interface) or {}

    def wg_allowed_ips(self, interface: str = "mesh0") -> dict[str, str] | None:
        """public key -> allowed IPs, as WireGuard has them now (None without the interface)."""
        done = self.run("wg", "show", interface, "allowed-ips", check=False)
        if done.returncode != 0:
            return None
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


def free_subnet() -> int:
    """A lab subnet S (public 10.213.S.0/24, site LANs 10.(214+).S.0/24) that no address or route of
    the root namespace uses now and that no Ansible lab keeps."""
    seen = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
    used = {int(s) for s in re.findall(r"\b10\.2(?:1[3-9]|[2-5]\d)\.(\d+)\.", seen)}
    return random.choice([s for s in range(1, 250) if s not in used | KEPT_SUBNETS])


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: f"{random.randrange(16 ** 4):04x}")
    subnet: int = field(default_factory=free_subnet)
    hosts: list[Host] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    cuts: set[frozenset[str]] = field(default_factory=set)  # pairs of host names

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

    def add_host(self, name: str, site: Site | None = None) -> Host:
        """A host on the public bridge, or inside `site` (on its LAN, default route via its router)."""
        index = len(self.hosts) + 1
        lift_neighbour_limits(index + len(self.sites) + 1)  # every host, router and the root namespace
        if index >= (254 if site else 200):
            raise ValueError("public hosts are .1-.199 (routers are .201 up), site hosts .1-.253 (routers .254)")
        address = site.address(index) if site else f"10.213.{self.subnet}.{index}"
        switch, bridge = (site.netns, "lan") if site else (self.switch, "br0")
        host = Host(name, f"mvt{self.tag}{name}", address, site=site)
        sh("ip", "netns", "add", host.netns)
        sh("ip", "-n", host.netns, "link", "add", "eth0", "type", "veth", "peer", "name", f"h{index}",
           "netns", switch)
        sh("ip", "-n", switch, "link", "set", f"h{index}", "master", bridge, "up")
        sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        if site:
            sh("ip", "-n", host.netns, "route", "add", "default", "via", site.router)
        else:
            for routed in self._routed():
                sh("ip", "-n", host.netns, "route", "replace", routed.lan, "via", routed.wan)
        host.boot()
        self.hosts.append(host)
        return host

    def add_site(self, name: str, kind: SiteKind) -> Site:
        """A router namespace between the public bridge and a new LAN (see the module docstring)."""
        if kind not in ("routed", "nat"):
            raise ValueError(f"a site is routed or nat, not {kind!r}")
        index = len(self.sites) + 1
        lift_neighbour_limits(len(self.hosts) + index + 1)
        site = Site(name, kind, f"mvt{self.tag}-site-{name}", f"10.213.{self.subnet}.{200 + index}",
                    site_lan(self.subnet, index))
        sh("ip", "netns", "add", site.netns)
        sh("ip", "-n", site.netns, "link", "set", "lo", "up")
        sh("ip", "-n", site.netns, "link", "add", "wan", "type", "veth", "peer", "name", f"w{index}",
           "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", f"w{index}", "master", "br0", "up")
        sh("ip", "-n", site.netns, "addr", "add", f"{site.wan}/24", "dev", "wan")
        sh("ip", "-n", site.netns, "link", "set", "wan", "up")
        sh("ip", "-n", site.netns, "link", "add", "lan", "type", "bridge")
        sh("ip", "-n", site.netns, "addr", "add", f"{site.router}/24", "dev", "lan")
        sh("ip", "-n", site.netns, "link", "set", "lan", "up")
        sh("ip", "netns", "exec", site.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for routed in self._routed():
            sh("ip", "-n", site.netns, "route", "replace", routed.lan, "via", routed.wan)
        if kind == "nat":
            sh("ip", "netns", "exec", site.netns, "nft", "-f", "-", stdin=nft.nat_ruleset())
        else:
            boxes = [["ip"]] + [["ip", "-n", box] for box in self._public_netns()]
            for box in boxes:
                sh(*box, "route", "replace", site.lan, "via", site.wan)
        self.sites.append(site)
        return site

    def seen_as(self, host: Host) -> str:
        """The underlay address others on the public side see the host's traffic come from."""
        return host.site.wan if host.site and host.site.kind == "nat" else host.address

    def cut(self, a: Host, b: Host) -> None:
        """Drop UDP between a and b (in both hosts' namespaces) while both still reach the root namespace."""
        self.cuts.add(frozenset((a.name, b.name)))
        self._apply_cuts(a, b)

    def heal(self, a: Host, b: Host) -> None:
        """Undo cut(a, b); other cuts stay."""
        self.cuts.discard(frozenset((a.name, b.name)))
        self._apply_cuts(a, b)

    def _apply_cuts(self, *hosts: Host) -> None:
        by_name = {host.name: host for host in self.hosts}
        for host in hosts:
            others = [by_name[name] for pair in self.cuts if host.name in pair for name in pair - {host.name}]
            addresses = {address for other in others for address in (other.address, self.seen_as(other))}
            sh("ip", "netns", "exec", host.netns, "nft", "-f", "-", stdin=cut_ruleset(addresses))

    def _routed(self) -> list[Site]:
        return [site for site in self.sites if site.kind == "routed"]

    def _public_netns(self) -> list[str]:
        """Namespaces on the public bridge: public hosts and routers."""
        return [host.netns for host in self.hosts if host.site is None] + [site.netns for site in self.sites]

    def __exit__(self, *exc) -> None:
        for host in self.hosts:
            host.crash()
            if host.init is not None:
                host.init.kill()
                host.init.wait()
        time.sleep(0.2)
        for host in self.hosts:
            sh("ip", "netns", "del", host.netns, check=False)
        for site in self.sites:
            if site.kind == "routed":
                sh("ip", "route", "del", site.lan, check=False)
            sh("ip", "netns", "del", site.netns, check=False)
        sh("ip", "link", "del", f"mvt{self.tag}r", check=False)
        sh("ip", "netns", "del", self.switch, check=False)
