"""The agent's Prometheus metrics: the reconcile-duration histogram, and the status as Prometheus text. Pure.

Owns the metric names of the agent (docs/observability.md lists them) and `Durations`, the
histogram the reconciler fills. Every metric is rendered from one `meshcommon.contract.wire.AgentStatus`,
the same the status socket answers, so `meshagent status --metrics` and the `--metrics-listen`
endpoint say the same thing. prometheus_client is imported only when metrics are rendered: an
agent nobody scrapes never loads it. Must not do I/O or read the clock.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from meshcommon.contract.wire import AgentStatus, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A pass with nothing to do takes milliseconds (a netlink dump, a UAPI read); one that writes a
# thousand peers' routes, seconds.
RECONCILE_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)
# Every metric family the agent exports (the dashboard test checks docs/grafana/meshvpn.json against it).
FAMILIES = ("meshvpn_agent_up", "meshvpn_agent_info", "meshvpn_agent_revision", "meshvpn_agent_applied_revision",
            "meshvpn_agent_control_connected", "meshvpn_agent_peers", "meshvpn_agent_peer_online",
            "meshvpn_agent_peer_last_handshake_seconds", "meshvpn_agent_peer_rx_bytes",
            "meshvpn_agent_peer_tx_bytes", "meshvpn_agent_writes", "meshvpn_agent_reconcile_seconds")


@dataclass
class Durations:
    """How long each reconcile pass took, by bucket (`RECONCILE_BUCKETS`)."""

    bounds: tuple[float, ...] = RECONCILE_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(RECONCILE_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> Histogram:
        return Histogram(list(self.bounds), list(self.counts), self.total)


def cumulative(histogram: Histogram) -> list[tuple[str, int]]:
    """Prometheus buckets, (le, observations at or below it), ending with +Inf."""
    found, seen = [], 0
    for bound, count in zip([*histogram.bounds, float("inf")], histogram.counts, strict=True):
        seen += count
        found.append(("+Inf" if bound == float("inf") else repr(bound), seen))
    return found


def families(status: AgentStatus) -> Iterator[Any]:
    """The metric families of one status (prometheus_client's, imported here: see the docstring)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    running = status.control != "unknown"
    yield GaugeMetricFamily("meshvpn_agent_up", "1 when a running agent answered; 0: read from its state directory",
                            value=int(running))
    info = GaugeMetricFamily("meshvpn_agent_info", "This node: always 1, with its identity as labels",
                             labels=["node", "node_id", "mesh_ip", "interface", "backend"])
    info.add_metric([status.name, status.node_id or "", status.mesh_ip or "", status.interface,
                     status.backend or ""], 1)
    yield info
    if status.revision is not None:
        yield GaugeMetricFamily("meshvpn_agent_revision", "Revision of the netmap the agent holds",
                                value=status.revision)
    if status.applied_revision is not None:
        yield GaugeMetricFamily("meshvpn_agent_applied_revision", "Revision the interface last fully reached",
                                value=status.applied_revision)
    if running:
        yield GaugeMetricFamily("meshvpn_agent_control_connected",
                                "1 while the agent reaches a control plane, 0 while it does not",
                                value=int(status.control == "connected"))
    yield from peer_families(status, GaugeMetricFamily, CounterMetricFamily)
    if status.writes is not None:
        writes = CounterMetricFamily("meshvpn_agent_writes", "Writes the agent made since it started",
                                     labels=["kind"])
        writes.add_metric(["wireguard"], status.writes.wireguard)
        writes.add_metric(["netlink"], status.writes.netlink)
        yield writes
    if status.reconcile_seconds is not None:
        yield HistogramMetricFamily("meshvpn_agent_reconcile_seconds", "Time one reconcile pass took",
                                    buckets=cumulative(status.reconcile_seconds),
                                    sum_value=status.reconcile_seconds.sum)


def peer_families(status: AgentStatus, gauge: Any, counter: Any) -> Iterator[Any]:
    labels = ["peer", "peer_id"]
    peers = gauge("meshvpn_agent_peers", "Peers in the netmap, by what the control plane says of them",
                  labels=["state"])
    online = sum(peer.online for peer in status.peers)
    peers.add_metric(["online"], online)
    peers.add_metric(["offline"], len(status.peers) - online)
    up = gauge("meshvpn_agent_peer_online", "1 when the control plane says the peer is online", labels=labels)
    handshake = gauge("meshvpn_agent_peer_last_handshake_seconds",
                      "Unix time of the last WireGuard handshake with the peer; 0: never", labels=labels)
    rx = counter("meshvpn_agent_peer_rx_bytes", "Bytes received from the peer (WireGuard's counter)", labels=labels)
    tx = counter("meshvpn_agent_peer_tx_bytes", "Bytes sent to the peer (WireGuard's counter)", labels=labels)
    for peer in status.peers:
        names = [peer.name, peer.node_id]
        up.add_metric(names, int(peer.online))
        handshake.add_metric(names, peer.latest_handshake or 0)
        rx.add_metric(names, peer.rx)
        tx.add_metric(names, peer.tx)
    yield from (peers, up, handshake, rx, tx)


def render(status: AgentStatus) -> str:
    """The status as Prometheus text (exposition format 0.0.4)."""
    from prometheus_client import CollectorRegistry, generate_latest

    class Collector:
        def collect(self) -> Iterator[Any]:
            return families(status)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode()
