"""Tunnel health: which configured peers this node has no working tunnel to, and when to say so. Pure.

Owns the rule the heartbeat's `tunnels_down` reports by. A tunnel works while WireGuard's session
is fresh and something arrived from the peer within HEALTH_BOUND seconds. An idle tunnel does not
receive on both ends by itself: a persistent keepalive is sent only when nothing passed either way
for KEEPALIVE seconds, so one end ends up sending every keepalive and the other receiving them.
So a peer quiet for PROBE_AFTER seconds is probed: one datagram into the tunnel, which WireGuard at
the other end answers with a keepalive within 10 s (its passive keepalive after received data),
whatever the peer's firewall does with the datagram itself. A working tunnel thus receives well
within the bound on both ends; a cut one does not. A peer gets HEALTH_BOUND seconds after it is
configured before its silence counts. WireGuard shows no receive time, only a byte counter:
`Tracker` notes when each peer's counter last grew, from the samples it is given. A report goes out
when the set of tunnels down (or a reason) changes, and again every REFRESH seconds, so a report
the control plane lost is repaired without any acknowledgement. Must not do I/O or read the clock:
`now` is passed in.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.core.model import PeerStats
from meshcommon.contract.timings import HANDSHAKE_FRESH, HEALTH_BOUND

REFRESH = 30.0  # seconds between reports of an unchanged set
PROBE_AFTER = 20.0  # seconds of silence from a peer before it is probed, and between probes


@dataclass(frozen=True)
class Seen:
    """One configured peer as sampled: since when it is configured, its receive counter, when that grew."""

    configured_at: float
    rx: int
    rx_at: float | None = None  # None: nothing received since this agent looked


@dataclass(frozen=True)
class Down:
    node_id: str
    reason: str  # no_handshake | stale_handshake | no_traffic
    since: float


def track(previous: Mapping[str, Seen], stats: Iterable[PeerStats], now: float) -> dict[str, Seen]:
    """The samples after one more look at WireGuard's counters (peers by public key)."""
    found = {}
    for peer in stats:
        before = previous.get(peer.public_key)
        if before is None:
            found[peer.public_key] = Seen(now, peer.rx)
        elif peer.rx > before.rx:
            found[peer.public_key] = Seen(before.configured_at, peer.rx, now)
        else:
            found[peer.public_key] = Seen(before.configured_at, peer.rx, before.rx_at)
    return found


def down(seen: Mapping[str, Seen], stats: Iterable[PeerStats], node_ids: Mapping[str, str], now: float) -> list[Down]:
    """The peers (of `node_ids`: public key -> node id) without a working tunnel now, by node id."""
    found = []
    for peer in stats:
        sample, node_id = seen.get(peer.public_key), node_ids.get(peer.public_key)
        if sample is None or node_id is None:
            continue
        since = sample.rx_at if sample.rx_at is not None else sample.configured_at
        if now - sample.configured_at < HEALTH_BOUND:
            continue  # just configured: give it time
        if not peer.latest_handshake:
            found.append(Down(node_id, "no_handshake", sample.configured_at))
        elif now - peer.latest_handshake >= HANDSHAKE_FRESH:
            found.append(Down(node_id, "stale_handshake", since))
        elif now - since >= HEALTH_BOUND:
            found.append(Down(node_id, "no_traffic", since))
    return sorted(found, key=lambda item: item.node_id)


def quiet(seen: Mapping[str, Seen], probed: Mapping[str, float], now: float) -> list[str]:
    """Peers (public keys) silent for PROBE_AFTER seconds and not probed in as long: probe them now."""
    return sorted(key for key, sample in seen.items()
                  if now - (sample.rx_at if sample.rx_at is not None else sample.configured_at) >= PROBE_AFTER
                  and now - probed.get(key, float("-inf")) >= PROBE_AFTER)


@dataclass(frozen=True)
class Report:
    """One sample's outcome: the `tunnels_down` to send (None: nothing to say this time), the tunnels
    that went down and the node ids whose tunnel came back since the last report, the peers to probe."""

    body: list[dict] | None = None
    went_down: dict[str, Down] = field(default_factory=dict)
    came_up: set[str] = field(default_factory=set)
    probe: list[str] = field(default_factory=list)


@dataclass
class Tracker:
    """The samples, when each peer was last probed, and what the last report said and when."""

    seen: dict[str, Seen] = field(default_factory=dict)
    probed: dict[str, float] = field(default_factory=dict)
    reported: dict[str, str] | None = None  # node id -> reason, as last reported
    reported_at: float = float("-inf")

    def update(self, stats: tuple[PeerStats, ...], node_ids: Mapping[str, str], now: float) -> Report:
        """Take one sample (WireGuard's counters now, public key -> node id of the netmap's peers)."""
        self.seen = track(self.seen, stats, now)
        probe = quiet(self.seen, self.probed, now)
        self.probed = {key: at for key, at in self.probed.items() if key in self.seen} | dict.fromkeys(probe, now)
        current = down(self.seen, stats, node_ids, now)
        state = {item.node_id: item.reason for item in current}
        if state == self.reported and now - self.reported_at < REFRESH:
            return Report(probe=probe)
        before = self.reported or {}
        went_down = {item.node_id: item for item in current if before.get(item.node_id) != item.reason}
        came_up = set(before) - set(state)
        self.reported, self.reported_at = state, now
        body = [{"node_id": item.node_id, "down_for": round(now - item.since, 1), "reason": item.reason}
                for item in current]
        return Report(body, went_down, came_up, probe)
