"""The chaos soak's invariants, checked on every snapshot of the mesh seen from outside. Pure: the
runner observes (the control plane's member list, each host's WireGuard peers and routes, a ping
matrix, what each agent holds) and feeds snapshots in order; nothing here touches a lab.

Owns what each invariant means and its bound:
- identity: mesh IPs unique among members at every instant; a node keeps its mesh IP for life;
- safety: every WireGuard peer on every host is a key the control plane registered for that mesh
  IP (a peer seen before its registration gets one more snapshot: the two are read one after the
  other);
- no_ghost: a member the control plane has offline or removed is gone from every host within
  `propagation` seconds of the first snapshot that showed it so (a host that a fault, or a fault of
  the control plane, touched in the last threshold is not judged: it cannot learn of it yet);
- convergence: once no fault has been live for `settle` seconds, every online member's host has
  exactly the other online members as peers (their keys at their /32s) and a route to each;
- availability: a pair that no fault touches (neither node taken off its data plane, nor the pair
  cut, in the fault or the threshold after its heal, or after the heal of a fault of the control
  plane it overlapped: a node cannot enrol without it; neither node offline in the threshold before
  the ping or the snapshot after it) answers its pings (judged one snapshot late, for that reason);
- no_false_offline: a member that no fault touched in the last `threshold` seconds (and while no
  fault of the control plane was live) is never declared offline (judged on the control plane's own
  `node_offline` events, so a flap between two snapshots is seen too);
- monotonic: no agent's revision ever goes backward.
Each check counts; a failed one is a Violation with what was expected and what was seen.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from testbed.chaos.schedule import KINDS, Fault

INVARIANTS = ("convergence", "no_ghost", "identity", "safety", "availability", "no_false_offline",
              "monotonic", "clean", "bounded")
# Faults whose node keeps its data plane while they last less than a heartbeat interval (a third of the
# threshold: longer, and the node may be declared offline, so removed from its peers, by design);
# anything else takes it off.
DATA_PLANE_KEPT = {"control_isolated", "readdress", "agent_crash"}


@dataclass(frozen=True)
class Member:
    """One node as the control plane lists it."""
    node_id: str
    name: str
    public_key: str
    mesh_ip: str
    online: bool


@dataclass(frozen=True)
class HostView:
    """One lab host from outside: its WireGuard peers (key -> allowed IP; None: no interface) and routes."""
    name: str
    peers: Mapping[str, str] | None
    routes: frozenset[str] = frozenset()
    revision: int | None = None  # the revision its agent holds (its netmap cache)


@dataclass(frozen=True)
class Snapshot:
    """The mesh from outside; its hosts read before its members (see the runner's `observe`)."""
    t: float  # seconds from the start of the run
    members: tuple[Member, ...] | None  # None: the control plane did not answer
    hosts: tuple[HostView, ...]
    pings: Mapping[tuple[str, str], bool] = field(default_factory=dict)  # (from, to) names -> answered
    offline_events: tuple[tuple[float, str], ...] = ()  # (t, node id) of node_offline since the last one


@dataclass(frozen=True)
class Violation:
    invariant: str
    t: float
    expected: str
    seen: str

    def to_json(self) -> dict:
        return {"invariant": self.invariant, "t": round(self.t, 3), "expected": self.expected, "seen": self.seen}


class Checker:
    def __init__(self, faults: list[Fault], threshold: float, settle: float, propagation: float = 2.0):
        self.faults, self.threshold, self.settle, self.propagation = faults, threshold, settle, propagation
        self.checks: Counter[str] = Counter()
        self.violations: list[Violation] = []
        self.margins: dict[str, float] = {}  # invariant -> smallest slack left under its bound (s)
        self._mesh_ip: dict[str, str] = {}  # node id -> its mesh IP, first seen
        self._registered: set[tuple[str, str]] = set()  # (key, mesh IP) ever listed
        self._unknown: dict[tuple[str, str, str], float] = {}  # (host, key, IP) -> first seen unregistered
        self._gone_since: dict[str, tuple[float, str, str]] = {}  # key -> (since, IP, why) offline or removed
        self._names: dict[str, str] = {}  # node id -> name, as listed
        self._offline_at: dict[str, float] = {}  # name -> the last time it was seen offline or unlisted
        self._pending_pings: tuple[float, Mapping[tuple[str, str], bool]] | None = None
        self._revision: dict[str, int] = {}

    # -- faults over time

    def live(self, t: float) -> list[Fault]:
        return [fault for fault in self.faults if fault.t <= t <= fault.until]

    def touched(self, name: str, since: float, until: float) -> bool:
        """Whether a fault held node `name`, or was one of the control plane's, at any time in [since, until]."""
        return any(fault.t <= until and fault.until >= since
                   and (name in fault.nodes or KINDS[fault.kind].scope == "control") for fault in self.faults)

    def record(self, number: int, applied: float, healed: float | None = None) -> None:
        """The `number`-th fault as it really ran: applied (and healed) at these times from the start,
        which a busy runner makes later than scheduled; the windows above count from these."""
        fault = self.faults[number]
        hold = fault.hold if healed is None else max(0.0, healed - applied)
        self.faults[number] = replace(fault, t=applied, hold=hold)

    def quiet_since(self, t: float) -> float:
        """When the last fault before `t` healed (0: none had)."""
        return max((fault.until for fault in self.faults if fault.t <= t), default=0.0)

    # -- the checks

    def observe(self, snap: Snapshot) -> list[Violation]:
        found: list[Violation] = []
        if snap.members is not None:
            found += self._identity(snap)
            self._track_gone(snap)
        found += self._no_false_offline(snap)
        found += self._safety(snap)
        found += self._no_ghost(snap)
        found += self._monotonic(snap)
        found += self._availability(snap)
        if snap.members is not None and snap.t - self.quiet_since(snap.t) >= self.settle and not self.live(snap.t):
            found += self._convergence(snap)
        self.violations += found
        return found

    def _check(self, invariant: str, ok: bool, t: float, expected: str, seen: str) -> list[Violation]:
        self.checks[invariant] += 1
        return [] if ok else [Violation(invariant, t, expected, seen)]

    def _margin(self, invariant: str, slack: float) -> None:
        self.margins[invariant] = min(self.margins.get(invariant, slack), slack)

    def _identity(self, snap: Snapshot) -> list[Violation]:
        members = snap.members or ()
        ips = Counter(member.mesh_ip for member in members)
        found = self._check("identity", all(count == 1 for count in ips.values()), snap.t,
                            "each mesh IP held by one node", f"shared: {sorted(ip for ip, n in ips.items() if n > 1)}")
        for member in members:
            first = self._mesh_ip.setdefault(member.node_id, member.mesh_ip)
            found += self._check("identity", first == member.mesh_ip, snap.t,
                                 f"{member.name} ({member.node_id}) keeps {first}", member.mesh_ip)
            self._registered.add((member.public_key, member.mesh_ip))
            self._names[member.node_id] = member.name
        return found

    def _safety(self, snap: Snapshot) -> list[Violation]:
        found: list[Violation] = []
        seen_now = set()
        for host in snap.hosts:
            for key, allowed in (host.peers or {}).items():
                ip = allowed.split("/")[0]
                if (key, ip) in self._registered:
                    self.checks["safety"] += 1
                    continue
                mark = (host.name, key, ip)
                seen_now.add(mark)
                first = self._unknown.setdefault(mark, snap.t)
                if first < snap.t:  # unregistered on two snapshots in a row
                    found += self._check("safety", False, snap.t, f"a key the control plane registered for {ip}",
                                         f"{host.name} has peer {key} at {allowed}")
        self._unknown = {mark: t for mark, t in self._unknown.items() if mark in seen_now}
        return found

    def _track_gone(self, snap: Snapshot) -> None:
        listed = {member.public_key: member for member in snap.members or ()}
        for key, member in listed.items():
            if member.online:
                self._gone_since.pop(key, None)
            else:
                self._gone_since.setdefault(key, (snap.t, member.mesh_ip, f"{member.name} offline"))
        for key, ip in self._registered:
            if key not in listed:
                self._gone_since.setdefault(key, (snap.t, ip, "removed"))

    def _no_ghost(self, snap: Snapshot) -> list[Violation]:
        found: list[Violation] = []
        for host in snap.hosts:
            if host.peers is None:
                continue
            if self.touched(host.name, snap.t - self.threshold - self.propagation, snap.t):
                continue  # its agent down or restarting from its cache, or cut from the control plane
            for key, allowed in host.peers.items():
                if key not in self._gone_since:
                    continue
                since, _, why = self._gone_since[key]
                slack = since + self.propagation - snap.t
                if slack >= 0:
                    self._margin("no_ghost", slack)
                    continue
                found += self._check("no_ghost", False, snap.t, f"gone from every host {self.propagation:g} s "
                                     f"after the control plane had it {why}",
                                     f"{host.name} still has {key} at {allowed}, {snap.t - since:.1f} s after")
            self.checks["no_ghost"] += 1
        return found

    def _no_false_offline(self, snap: Snapshot) -> list[Violation]:
        found: list[Violation] = []
        for t, node_id in snap.offline_events:
            name = self._names.get(node_id, node_id)
            touched = self.touched(name, t - self.threshold - self.propagation, t)
            found += self._check("no_false_offline", touched, t,
                                 f"{name} stays online (no fault touched it or the control plane)",
                                 f"{name} declared offline")
        return found

    def _monotonic(self, snap: Snapshot) -> list[Violation]:
        found: list[Violation] = []
        for host in snap.hosts:
            if host.revision is None:
                continue
            before = self._revision.get(host.name, host.revision)
            self._revision[host.name] = max(before, host.revision)
            found += self._check("monotonic", host.revision >= before, snap.t,
                                 f"{host.name} holds revision {before} or later", str(host.revision))
        return found

    def _availability(self, snap: Snapshot) -> list[Violation]:
        """The previous snapshot's pings, now that this one says who was offline right after them."""
        for member in snap.members or ():
            if not member.online:
                self._offline_at[member.name] = snap.t
        if snap.members is not None:
            listed = {member.name for member in snap.members}
            for name in {name for pair in snap.pings for name in pair} - listed:
                self._offline_at[name] = snap.t
        pending, self._pending_pings = self._pending_pings, (snap.t, snap.pings)
        if pending is None:
            return []
        t, pings = pending
        # A fault's effect on pings outlasts its heal by up to a threshold (the peer re-added, a handshake).
        recent = [fault for fault in self.faults if fault.t <= t <= self._settled(fault)]
        off = {node for fault in recent if KINDS[fault.kind].scope == "node" and not self._keeps_data_plane(fault)
               for node in fault.nodes}
        off |= {fault.target for fault in recent if KINDS[fault.kind].scope == "join"}  # not converged yet
        off |= {name for name, at in self._offline_at.items() if at >= t - self.threshold}
        cut = {frozenset(fault.nodes) for fault in recent if KINDS[fault.kind].scope == "pair"}
        found: list[Violation] = []
        for (a, b), answered in pings.items():
            if a in off or b in off or frozenset((a, b)) in cut:
                continue
            found += self._check("availability", answered, t, f"{a} pings {b} (no fault touches the pair)",
                                 "no answer")
        return found

    def _settled(self, fault: Fault) -> float:
        """When the fault's effects are over: a threshold after its heal, or after the heal of a fault of
        the control plane it overlapped (a node that joins or comes back while the control plane is
        away can enrol, or learn of its peers, only once it is back)."""
        control = [other.until for other in self.faults if KINDS[other.kind].scope == "control"
                   and other.t <= fault.until and other.until >= fault.t]
        return max([fault.until, *control]) + self.threshold

    def _keeps_data_plane(self, fault: Fault) -> bool:
        """Short enough that the node cannot be declared offline: its silence is the time since its last
        heartbeat (up to an interval, a third of the threshold), the hold, and a restart's."""
        return fault.kind in DATA_PLANE_KEPT and fault.hold < self.threshold / 3

    def _convergence(self, snap: Snapshot) -> list[Violation]:
        online = [member for member in snap.members or () if member.online]
        by_name = {host.name: host for host in snap.hosts}
        found: list[Violation] = []
        for member in online:
            host = by_name.get(member.name)
            if host is None:
                continue
            want = {other.public_key: f"{other.mesh_ip}/32" for other in online if other.node_id != member.node_id}
            routes = frozenset(want.values())
            found += self._check("convergence", dict(host.peers or {}) == want and host.routes == routes, snap.t,
                                 f"{member.name} has the {len(want)} online peers and their routes",
                                 _difference(want, dict(host.peers or {}), routes, host.routes))
        return found


def _difference(want: dict[str, str], have: dict[str, str], want_routes: frozenset[str], routes: frozenset[str]) -> str:
    missing = sorted(f"{key[:8]}@{ip}" for key, ip in want.items() if have.get(key) != ip)
    extra = sorted(f"{key[:8]}@{ip}" for key, ip in have.items() if want.get(key) != ip)
    return (f"missing peers {missing}, extra peers {extra}, missing routes {sorted(want_routes - routes)}, "
            f"extra routes {sorted(routes - want_routes)}")
